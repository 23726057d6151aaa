"""Every code block in the README and docs/ runs.

A block preceded by ``<!-- docs-test: skip (REASON) -->`` is not run here; the reason
must name the test that runs it (or checks it) instead. Blocks of one document run in
order, from the repo root, so a later block may use what an earlier one wrote (out/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(<!-- docs-test: skip \((?P<why>[^)]+)\) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S
)
RUNNERS = {"bash": ["bash", "-euo", "pipefail", "-c"], "python": [sys.executable, "-c"]}
# A ```cpp block is a whole program: compiled against the built libtinyllm (make cpp), then run.
CPP_BUILD = (
    "set -euo pipefail; d=$(mktemp -d); printf '%s' \"$1\" > $d/main.cpp; "
    "g++ -std=c++17 -Iruntime/cpp/include $d/main.cpp -Lbuild/cpp -ltinyllm "
    "-Wl,-rpath,$PWD/build/cpp -o $d/main; $d/main"
)
RUNNERS["cpp"] = ["bash", "-c", CPP_BUILD, "cpp"]


def code_blocks(doc: Path) -> list[tuple[str, str, str | None]]:
    """(language, code, skip reason) for each fenced block of a Markdown file."""
    return [(m["lang"], m["code"], m["why"]) for m in BLOCK.finditer(doc.read_text())]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_code_blocks_run(doc: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = skipped = 0
    for lang, code, skip in code_blocks(doc):
        if skip is not None or lang not in RUNNERS:
            assert lang in ("", "text") or skip, f"{doc.name}: unrunnable ```{lang} block"
            skipped += skip is not None
            continue
        result = subprocess.run(
            [*RUNNERS[lang], code], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, f"{doc.name} block failed:\n{code}\n{result.stderr}"
        ran += 1
    assert ran + skipped > 0, f"{doc.name} has no runnable code block"


def test_skipped_blocks_are_run_elsewhere() -> None:
    reasons = [why for doc in DOCS for _, _, why in code_blocks(doc) if why]
    assert all("tests/" in why or "CI runs it" in why for why in reasons), reasons


def test_the_layout_page_names_every_module() -> None:
    # docs/layout.md says where each behaviour lives: a new module gets its line there.
    text = (REPO / "docs" / "layout.md").read_text()
    folders = {"sdk": "", "sdk/facade": "facade/", "sdk/suite": "suite/"}
    folders |= {f: "" for f in ("compress", "distill", "runtime")}
    missing = [
        f"{folder}/{path.name}"
        for folder, prefix in folders.items()
        for path in sorted((REPO / folder).glob("*.py"))
        if path.stem != "__init__" and f"`{prefix}{path.stem}`" not in text
    ]
    assert missing == [], f"docs/layout.md does not name: {missing}"
