"""``python -m disquette``: the command line (see :mod:`disquette.cli`)."""

from .cli import main

main(prog_name="disquette")
