"""Claim tokens: the name of each claim script call, under which ``claim.lua`` keeps the
receipt of what it leased (see ``claims_async.py``), for both flavours of the store."""

from __future__ import annotations

import itertools
import os
from typing import Final


class ClaimTokens:
    """Claim tokens (see ``claim.lua``), unique while their receipts live: this process's
    random prefix, drawn again in a forked child, then a counter. ``os.urandom`` made one
    system call per claim, two per blocked get of an idle worker."""

    def __init__(self) -> None:
        self.renew()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        """A new prefix and counter (a forked child must not repeat its parent's tokens)."""
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count()

    def next(self) -> str:
        """A token no other claim of any process is using."""
        return f"{self._prefix}{next(self._count):x}"


#: The tokens of every store of this process.
CLAIM_TOKENS: Final = ClaimTokens()
