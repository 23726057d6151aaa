"""A package's lazy names: imported on first use, kept after, listed by dir, unknown ones fail."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tinyllm
import tinyllm.runtime

PACKAGE = """
from tinyllm.lazyexports import lazy_exports

EAGER = 1
__getattr__, __dir__ = lazy_exports(__name__, {"VALUE": "lazypkg.heavy"}, submodules=("sub",))
"""


@pytest.fixture
def lazypkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A package on disk whose ``VALUE`` lives in a module that records its import."""
    folder = tmp_path / "lazypkg"
    folder.mkdir()
    (folder / "__init__.py").write_text(PACKAGE)
    (folder / "heavy.py").write_text("VALUE = object()\n")
    (folder / "sub.py").write_text("X = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazypkg  # type: ignore[import-not-found]

    yield lazypkg
    for name in [m for m in sys.modules if m.split(".")[0] == "lazypkg"]:
        del sys.modules[name]


def test_a_name_is_imported_on_first_use_and_kept(lazypkg: object) -> None:
    assert "lazypkg.heavy" not in sys.modules
    value = lazypkg.VALUE  # type: ignore[attr-defined]
    assert value is sys.modules["lazypkg.heavy"].VALUE
    assert vars(lazypkg)["VALUE"] is value  # kept: the next lookup skips __getattr__


def test_a_submodule_is_reachable_as_an_attribute(lazypkg: object) -> None:
    assert "lazypkg.sub" not in sys.modules
    assert lazypkg.sub.X == 2  # type: ignore[attr-defined]


def test_dir_lists_the_lazy_names_before_they_load(lazypkg: object) -> None:
    names = dir(lazypkg)
    assert {"EAGER", "VALUE", "sub"} <= set(names) and names == sorted(names)
    assert "lazypkg.heavy" not in sys.modules


def test_an_unknown_name_is_an_attribute_error(lazypkg: object) -> None:
    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'VALU'"):
        _ = lazypkg.VALU  # type: ignore[attr-defined]
    assert not hasattr(lazypkg, "heavy_thing")


def test_tinyllm_and_its_runtime_export_their_names() -> None:
    from tinyllm.bundle import Bundle
    from tinyllm.runtime.scheduler import SchedulerConfig

    assert tinyllm.Bundle is Bundle
    assert tinyllm.runtime.SchedulerConfig is SchedulerConfig
    assert set(tinyllm.__all__) <= set(dir(tinyllm))
    assert tinyllm.api is sys.modules["tinyllm.api"]
