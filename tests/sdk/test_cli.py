"""The CLI: a thin shim over tinyllm.api with one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tinyllm
from tinyllm.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_import_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.tllm"
    code, stdout, _ = run_cli(["import", "tiny-llama", "-o", str(out)], capsys)
    assert code == 0 and f"wrote {out}" in stdout
    code, stdout, _ = run_cli(["inspect", str(out)], capsys)
    assert code == 0
    assert "parameters  361,088 (0.4M)" in stdout
    assert "llama: 2 layers" in stdout and "lineage     (no parent: imported)" in stdout
    code, stdout, _ = run_cli(["inspect", str(out), "--json"], capsys)
    assert json.loads(stdout) == json.loads(json.dumps(tinyllm.inspect(out).to_dict()))


def test_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["inspect", str(tmp_path / "missing.tllm")], capsys)
    assert code == 1
    assert err.startswith("error: no bundle at") and err.count("\n") == 1
    assert "Traceback" not in err
    code, _, err = run_cli(["import", "llama-70b", "-o", str(tmp_path / "x.tllm")], capsys)
    assert code == 1 and "unknown preset 'llama-70b'" in err


def test_existing_output_needs_force(
    tiny_llama_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["import", "tiny-qwen2", "-o", str(tiny_llama_bundle)], capsys)
    assert code == 1 and "already exists" in err and "--force" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["import", "tiny-llama"], capsys)
    assert code == 2 and "Missing option '-o'" in err


def test_console_script_and_debug_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "tinyllm"
    missing = str(tmp_path / "missing.tllm")
    plain = subprocess.run([exe, "inspect", missing], capture_output=True, text=True)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run([exe, "--debug", "inspect", missing], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "BundleError" in debug.stderr
    helptext = subprocess.run([exe, "import", "--help"], capture_output=True, text=True).stdout
    assert "qwen2.5-0.5b-shape" in helptext and "tiny-llama" in helptext
