"""The sync flavor is generated; a stale copy would be a second, drifting implementation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_sync_code_is_current() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts/unasync.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
