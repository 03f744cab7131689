"""Real servers (PostgreSQL, Redis) for the tests: shared, or private ones we start."""
