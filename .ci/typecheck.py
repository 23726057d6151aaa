"""Type-check the tinyllm package under its import names.

The package is assembled from top-level folders (sdk/ -> tinyllm, compress/ ->
tinyllm.compress, ...), a mapping mypy cannot read from pyproject.toml, so this script
builds a tree of symlinks with the installed layout, runs mypy on it and maps the paths
in mypy's report back to the source folders.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("compress", "distill", "runtime")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="tinyllm-typecheck-") as tmp:
        tree = Path(tmp) / "tinyllm"
        tree.mkdir()
        for item in (ROOT / "sdk").iterdir():
            (tree / item.name).symlink_to(item)
        for sub in SUBPACKAGES:
            (tree / sub).symlink_to(ROOT / sub)
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
