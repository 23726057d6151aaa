"""Type-check the tinyllm package under its import names.

mypy cannot read the folder -> package mapping from pyproject.toml, so this script runs
it on a tree of symlinks with the installed layout (layout.py) and maps the paths in
mypy's report back to the source folders.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from layout import ROOT, SUBPACKAGES, installed_tree


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tinyllm-typecheck-") as tmp:
        installed_tree(Path(tmp))
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "-p",
                "tinyllm",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        report = proc.stdout + proc.stderr
        for sub in SUBPACKAGES:
            report = report.replace(f"tinyllm/{sub}/", f"{sub}/")
        print(report.replace("tinyllm/", "sdk/"), end="")
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
