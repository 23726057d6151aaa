"""Where the native runtime's built artifacts are, for the tests of tests/runtime/cpp (the
``lib`` fixture and the tests that run its programs); imported by bare name, as
tests/runtime/cpp is on the import path while its tests run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tinyllm.errors import TinyLLMError
from tinyllm.runtime import native


def require_built(path_of: str, build: str = "cpp") -> Path:
    """Path of a built artifact; fails under `make test`, skips otherwise when missing."""
    try:
        if path_of == native.LIBRARY:
            return native.library_path(build)
        return native.tool_path(path_of, build)
    except TinyLLMError as e:
        if os.environ.get("TINYLLM_NATIVE_REQUIRED"):
            pytest.fail(str(e))
        pytest.skip(str(e))
