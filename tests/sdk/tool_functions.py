"""Tool functions for the isolation tests, at a module's top level so a worker process
can import them by name (this module imports nothing heavy, so workers start fast)."""

from __future__ import annotations

import time


def busy(text: str) -> str:
    """Spins in Python code forever."""
    while True:
        pass


def nap(text: str) -> str:
    """Blocks in C code (time.sleep) for ``text`` seconds; ``boom`` raises instead."""
    if text == "boom":
        raise RuntimeError("kaput")
    time.sleep(float(text))
    return "awake"
