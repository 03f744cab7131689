"""``manage.py disquette``."""
