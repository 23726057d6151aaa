"""Packaging: the wheel carries every module; the core imports without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {
    "sdk": "tinyllm",
    "sdk/suite": "tinyllm.suite",
    "sdk/facade": "tinyllm.facade",
    "compress": "tinyllm.compress",
    "distill": "tinyllm.distill",
    "runtime": "tinyllm.runtime",
}
SKIP_COPY = shutil.ignore_patterns(
    ".venv",
    ".git",
    "out",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    "*.tllm",
)


def source_modules() -> list[str]:
    """Every module of the four packages, from the source folders (not from an install)."""
    tops = ("sdk", "compress", "distill", "runtime")
    found = {
        p.parent.relative_to(REPO).as_posix() for t in tops for p in (REPO / t).rglob("__init__.py")
    }
    assert found == set(FOLDERS), "a package folder is missing from FOLDERS (and pyproject?)"
    modules = []
    for folder, package in FOLDERS.items():
        for path in sorted((REPO / folder).glob("*.py")):
            modules.append(package if path.stem == "__init__" else f"{package}.{path.stem}")
    return modules


@pytest.mark.slow
def test_wheel_in_a_scratch_venv_imports_every_module(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=SKIP_COPY)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
    )
    (wheel,) = dist.glob("tinyllm-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies come from the dev environment; a plain path entry does not run its
    # .pth files, so the editable install of tinyllm there stays invisible.
    (Path(site) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    modules = source_modules()
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert mod.__file__.startswith({site!r}), (name, mod.__file__)\n"
        "from tinyllm.tokenizer import tiny_tokenizer_file\n"
        "print(len(tiny_tokenizer_file(300).read_text()) > 0)\n"
        "from tinyllm.api import load_tasks\n"
        "print(len(load_tasks('builtin').tasks))\n"
    )
    env = {**os.environ, "TINYLLM_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "6"]  # package data: corpus and suite
    assert len(modules) >= 15
    helptext = subprocess.run(
        [venv / "bin" / "tinyllm", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert helptext.returncode == 0 and "inspect" in helptext.stdout


def test_core_and_runtime_import_and_inspect_without_torch(tiny_llama_bundle: Path) -> None:
    script = (
        "import sys\n"
        "for blocked in ('torch', 'transformers', 'accelerate'):\n"
        "    sys.modules[blocked] = None\n"
        "import tinyllm, tinyllm.runtime, tinyllm.compress, tinyllm.distill, tinyllm.cli\n"
        f"report = tinyllm.inspect({str(tiny_llama_bundle)!r})\n"
        "print(report.parameters)\n"
        "try:\n"
        "    tinyllm.import_model('tiny-llama', sys.argv[1])\n"
        "except tinyllm.TinyLLMError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tiny_llama_bundle.parent / "x")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "361088"
    assert "needs the 'torch' package" in lines[1] and "tinyllm[torch]" in lines[1]
