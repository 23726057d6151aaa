"""`make demo`, the first command of the README, does what the README says."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_imports_exports_and_generates_with_smollm2() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "demo"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "parameters  134,515,008 (134.5M)" in out
    assert "llama: 30 layers" in out and "vocab 49152" in out
    assert "source      preset: smollm2-135m" in out
    assert "verification (int4" in out and "PASSED" in out
    assert "Paris" in out.split("PASSED")[1]  # the int4 engine answers the demo question
    answers = [line for line in out.splitlines() if line.startswith(("sentiment ", "intent "))]
    assert len(answers) == 4 and all(" -> '" in line for line in answers)  # labels, not None
