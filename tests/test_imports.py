"""The import contract (.importlinter) and the import-cycle count (.ci/import_cycles.py).

The contract runs in ``make lint``; here each of its rules is also shown to fail when a
forbidden import is added to a copy of the sources.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("sdk", "compress", "distill", "runtime", ".ci")


def ci_script(name: str) -> ModuleType:
    """Import one of the .ci scripts as a module (they are not a package)."""
    sys.path.insert(0, str(REPO / ".ci"))  # the scripts import layout.py beside them
    try:
        spec = importlib.util.spec_from_file_location(name, REPO / ".ci" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while defining
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / ".ci"))


def source_copy(dest: Path) -> Path:
    """The package folders, the contract and pyproject.toml copied to ``dest``."""
    for folder in SOURCES:
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in (".importlinter", "pyproject.toml"):
        shutil.copy(REPO / file, dest / file)
    return dest


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """Run the contract on the sources under ``root``."""
    return subprocess.run(
        [sys.executable, str(REPO / ".ci" / "import_contract.py"), "--root", str(root)],
        capture_output=True,
        text=True,
    )


def test_the_contract_holds() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout


# (file, line added at its end, the contract that breaks, what the report says)
BACK_EDGES = [
    (
        "distill/recipe.py",
        "import tinyllm.api",
        "Layers: cli > api > facade > stages > core BROKEN",
        "tinyllm.distill is not allowed to import tinyllm.api",
    ),
    (
        "compress/prune.py",
        "import tinyllm.distill.losses",
        "never import one another BROKEN",
        "tinyllm.compress is not allowed to import tinyllm.distill",
    ),
    (
        "sdk/tasks.py",
        "import tinyllm.runtime.sampling",
        "Layers: cli > api > facade > stages > core BROKEN",
        "tinyllm.tasks is not allowed to import tinyllm.runtime",
    ),
    (
        "runtime/sampling.py",
        "import torch",
        "facade BROKEN",
        "tinyllm.runtime.sampling is not allowed to import torch",
    ),
    (
        "runtime/router.py",
        "import tinyllm.suite",
        "facade BROKEN",
        "tinyllm.runtime.router is not allowed to import tinyllm.suite",
    ),
    (
        "sdk/tasks.py",
        "import tinyllm.verifiers",  # verifiers imports tasks
        "No import cycles among the modules of any package of tinyllm BROKEN",
        "It could be made acyclic",
    ),
    (
        "sdk/newcore.py",  # a new module nobody placed in a layer
        '"""A module of the core."""',
        "Layers: cli > api > facade > stages > core BROKEN",
        "tinyllm.newcore",
    ),
]


@pytest.mark.parametrize(("file", "line", "broken", "reason"), BACK_EDGES)
def test_the_contract_fails_on_a_back_edge(
    tmp_path: Path, file: str, line: str, broken: str, reason: str
) -> None:
    root = source_copy(tmp_path)
    path = root / file
    path.write_text((path.read_text() if path.exists() else "") + f"\n{line}\n")
    result = lint(root)
    report = " ".join(result.stdout.split())  # rich wraps long lines
    assert result.returncode == 1, report
    assert broken in report and reason in report, report


def test_cycle_count_finds_function_local_and_relative_imports() -> None:
    cycles = ci_script("import_cycles")
    tree = ast.parse(
        "from tinyllm import api\n"
        "def f():\n"
        "    from . import bundle\n"
        "    import tinyllm.runtime.engine\n"
        "if True:\n"
        "    from tinyllm.config import ModelConfig\n"
    )
    modules = {"tinyllm.api", "tinyllm.bundle", "tinyllm.runtime.engine", "tinyllm.config"}
    names = set(cycles.imported_names(tree, "tinyllm.models", False, modules))
    assert names == modules


def test_cycle_count_on_a_hand_built_graph() -> None:
    cycles = ci_script("import_cycles")
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles.count_cycles(graph) == 2  # a-b-a and a-b-c-a
    groups = [g for g in cycles.strongly_connected(graph) if len(g) > 1]
    assert groups == [["a", "b", "c"]]
    assert cycles.count_cycles({"a": {"b"}, "b": set()}) == 0


def test_cycle_count_of_the_package(tmp_path: Path) -> None:
    cycles = ci_script("import_cycles")
    graph = cycles.import_graph(REPO)
    # 24 before the house step (#19); the last, engine <-> service, went with the one
    # decode loop (#14).
    assert cycles.count_cycles(graph) == 0
    assert [g for g in cycles.strongly_connected(graph) if len(g) > 1] == []
    root = source_copy(tmp_path)
    with (root / "sdk" / "tasks.py").open("a") as f:
        f.write("\ndef f():\n    import tinyllm.verifiers\n")  # verifiers imports tasks
    broken = cycles.import_graph(root)
    assert cycles.count_cycles(broken) > cycles.count_cycles(graph)
    groups = cycles.strongly_connected(broken)
    assert any({"tinyllm.tasks", "tinyllm.verifiers"} <= set(g) for g in groups)


def test_importing_the_runtime_loads_no_torch_onnx_export_side_or_facade() -> None:
    forbidden = [
        "torch",
        "transformers",
        "onnx",
        "tinyllm.api",
        "tinyllm.cli",
        "tinyllm.suite",
        "tinyllm.inspection",
        "tinyllm.evaluation",
        "tinyllm.runtime.builder",
        "tinyllm.runtime.export",
        "tinyllm.runtime.verify",
    ]
    script = (
        "import sys\n"
        "import tinyllm.runtime\n"
        "from tinyllm.runtime import Engine, GenerationConfig\n"
        f"print(' '.join(m for m in {forbidden!r} if m in sys.modules))\n"
        "print(len([m for m in sys.modules if m.startswith('tinyllm')]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded, count = result.stdout.splitlines()
    assert loaded == ""
    # 27 before the house step (#19), 21 after; the one decode loop (#14) added the
    # prefix cache, the engine.json schema and the task table; the profile step (#17)
    # the loop's request state split out of serving.py, its stopwatch, serving defaults;
    # the integrity step (#18) the file-hash cache and the engine.json check; tools (#21)
    # the tool registry, its schema subset, the calculator, the call constraint and runner;
    # crash safety (#18) the durability module (fsync, atomic swap, writer lock);
    # speculative decoding (#15) its drafts module; the lazy names' helper both packages
    # use (#19); the session's split into modules of one job (ortsession, kvbuffers,
    # hostbindings, devicebuffers, standardstep: no measurable import time, 0.63 s either
    # way on a loaded machine); the call constraint's pattern subset (charpattern, #21).
    assert int(count) <= 44
