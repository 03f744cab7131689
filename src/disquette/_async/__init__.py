"""The asyncio flavor: the source from which ``disquette._sync`` is generated."""
