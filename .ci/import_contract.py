"""Check tinyllm's import contract (.importlinter) with import-linter.

import-linter finds a package by walking its folder, so it runs on a tree of symlinks
with the installed layout (layout.py), in a subprocess whose first path entry is that
tree. ``--root`` checks another copy of the sources (tests add a back-edge to a copy and
see the contract fail).

    python .ci/import_contract.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from layout import ROOT, installed_tree

LINT = "import sys; from importlinter.cli import lint_imports_command; lint_imports_command()"


def check(root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run import-linter on ``root``'s sources against ``root/.importlinter``."""
    with tempfile.TemporaryDirectory(prefix="tinyllm-imports-") as tmp:
        installed_tree(Path(tmp), root)
        env = {**os.environ, "PYTHONPATH": tmp}
        return subprocess.run(
            [sys.executable, "-c", LINT, str(root / ".importlinter"), "--no-cache", "--no-logo"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the sources to check")
    args = parser.parse_args(argv)
    proc = check(args.root.resolve())
    print(proc.stdout + proc.stderr, end="")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
