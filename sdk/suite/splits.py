"""What the suite's data builders share: split sizes, and splits drawn without overlap.

A module of its own, so the builders import it and not the suite package that imports
them.
"""

from __future__ import annotations

from collections.abc import Callable

from tinyllm.tasks import SPLITS, Example


def draw_splits(
    sizes: dict[str, int], draw: Callable[[], Example | None]
) -> dict[str, list[Example]]:
    """Fill test, then validation, then train with examples from ``draw`` whose inputs are
    all distinct (no input shared between splits); ``draw`` returns None to reject one."""
    seen: set[str] = set()
    splits: dict[str, list[Example]] = {}
    for split in ("test", "validation", "train"):
        out: list[Example] = []
        while len(out) < sizes[split]:
            example = draw()
            if example is not None and example.input not in seen:
                seen.add(example.input)
                out.append(example)
        splits[split] = out
    return splits


def split_sizes(sizes: dict[str, int], defaults: dict[str, int]) -> dict[str, int]:
    """Sizes per split: the spec's where given, else the builder's defaults."""
    return {split: sizes.get(split, defaults[split]) for split in SPLITS}
