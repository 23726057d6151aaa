"""Finding the built native runtime from Python."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from tinyllm.errors import TinyLLMError
from tinyllm.runtime import native


def test_library_path_points_at_the_build(lib: ctypes.CDLL) -> None:
    path = native.library_path()
    assert path == native.build_dir() / "libtinyllm.so"
    assert lib.tinyllm_version().decode() == "0.1.0"


def test_missing_library_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TINYLLM_NATIVE_LIBRARY", str(tmp_path / "nowhere.so"))
    with pytest.raises(TinyLLMError, match="make cpp"):
        native.library_path()
    with pytest.raises(TinyLLMError, match="make cpp"):
        native.tool_path("no-such-program")


def test_env_override_is_used(lib: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch) -> None:
    real = native.library_path()
    monkeypatch.setenv("TINYLLM_NATIVE_LIBRARY", str(real))
    assert native.library_path("elsewhere") == real
