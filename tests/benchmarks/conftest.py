"""What the benchmark scripts' tests share: the scripts' folder on the import path, and
the one check of whether the native runtime is built (a failure where CI requires it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tinyllm.errors import TinyLLMError

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The benchmarks folder, first on ``sys.path`` for the test (its scripts import one
    another by bare name, as they do when run from there)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return BENCH


@pytest.fixture()
def native_problem() -> Callable[[Callable[[], object]], str]:
    """A check of the native runtime: ``check(find)`` is "" when ``find()`` (e.g.
    ``native.library_path``) finds it, else its error's message, which says how to build
    it. Where ``TINYLLM_NATIVE_REQUIRED`` is set (CI's native job), a missing runtime fails
    the test instead."""

    def check(find: Callable[[], object]) -> str:
        try:
            find()
        except TinyLLMError as e:
            if os.environ.get("TINYLLM_NATIVE_REQUIRED"):
                pytest.fail(str(e))
            return str(e)
        return ""

    return check
