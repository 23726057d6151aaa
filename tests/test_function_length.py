"""The function-length rule (.ci/function_length.py): the package keeps it, and the check
fails on a long function, a listed one that grew, a stale entry and a long api function."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest
from test_imports import REPO, ci_script  # tests/ is on sys.path


@pytest.fixture(scope="module")
def rule() -> ModuleType:
    return ci_script("function_length")


def function(name: str, length: int, doc_lines: int = 0) -> str:
    """Source of a function of ``length`` lines from ``def`` on, not counting a docstring
    of ``doc_lines`` lines."""
    doc = ['    """Doc.'] + ["    more"] * (doc_lines - 2) + ['    """'] if doc_lines else []
    body = [f"    x{i} = {i}" for i in range(length - 2)] + ["    return None"]
    return "\n".join([f"def {name}() -> None:", *doc, *body]) + "\n"


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """A source root with pyproject.toml (the folder -> package map) and ``files``."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_package_keeps_the_rule(rule: ModuleType) -> None:
    found, every = rule.problems()
    assert found == []
    assert len(every) > 1000  # it read the whole package, sdk/facade and sdk/suite too
    assert {f.name.rsplit(".", 1)[0] for f in every} >= {"tinyllm.facade.export", "tinyllm.suite"}


def test_a_function_over_60_lines_fails_and_60_passes(rule: ModuleType, tmp_path: Path) -> None:
    root = tree(tmp_path, {"runtime/long.py": function("long", 60) + function("longer", 61)})
    found, _ = rule.problems(root, allowed={})
    assert len(found) == 1 and "runtime/long.py" in found[0] and "longer: 61 lines" in found[0]


def test_the_docstring_does_not_count_and_nested_functions_do(
    rule: ModuleType, tmp_path: Path
) -> None:
    nested = "def outer() -> None:\n" + "".join(
        "    " + line + "\n" for line in function("inner", 60).splitlines()
    )
    root = tree(tmp_path, {"compress/a.py": function("documented", 60, doc_lines=20) + nested})
    found, every = rule.problems(root, allowed={})
    lengths = {f.name: f.length for f in every}
    assert lengths["tinyllm.compress.a.documented"] == 60
    assert lengths["tinyllm.compress.a.outer.inner"] == 60
    assert found == ["compress/a.py:81 outer: 61 lines, over 60 (split it, or list it)"]


def test_the_allow_list_holds_the_length_and_goes_stale(rule: ModuleType, tmp_path: Path) -> None:
    root = tree(tmp_path, {"distill/d.py": function("big", 70) + function("fixed", 30)})
    allowed = {"tinyllm.distill.d.big": (70, "why"), "tinyllm.distill.d.fixed": (65, "why")}
    found, _ = rule.problems(root, allowed=allowed)
    assert found == ["allow-list entry tinyllm.distill.d.fixed is stale: remove it"]
    found, _ = rule.problems(root, allowed={"tinyllm.distill.d.big": (69, "why")})
    assert found == ["distill/d.py:1 big: 70 lines, grew past its allowed 69"]


def test_api_functions_are_held_to_40_lines(rule: ModuleType, tmp_path: Path) -> None:
    root = tree(tmp_path, {"sdk/api.py": function("forwarding", 40) + function("logic", 41)})
    found, _ = rule.problems(root, allowed={"tinyllm.api.logic": (41, "no exceptions in api")})
    assert found[0] == "sdk/api.py:41 logic: 41 lines, over 40 in tinyllm.api"
