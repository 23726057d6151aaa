"""The installed layout of the tinyllm package, built from the source folders.

The package is assembled from top-level folders (sdk/ -> tinyllm, compress/ ->
tinyllm.compress, ...), a mapping tools that walk a package's folder (mypy, grimp for
import-linter) cannot read from pyproject.toml: they get a tree of symlinks instead.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("compress", "distill", "runtime")


def installed_tree(dest: Path, root: Path = ROOT) -> Path:
    """Write ``dest/tinyllm`` as symlinks to ``root``'s folders; return ``dest/tinyllm``."""
    tree = dest / "tinyllm"
    tree.mkdir()
    for item in (root / "sdk").iterdir():
        (tree / item.name).symlink_to(item)
    for sub in SUBPACKAGES:
        (tree / sub).symlink_to(root / sub)
    return tree
