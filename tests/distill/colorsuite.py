"""The constructed colour tasks of the distillation tests: a 3-label task whose answer is
the colour word named in the input, its examples, and a two-task suite on JSONL files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tinyllm.tasks import Example, write_examples

WORDS = ["red", "green", "blue"]


def color_task_dict(name: str = "color") -> dict[str, Any]:
    """A 3-label task whose answer is the colour word named in the input."""
    return {
        "name": name,
        "description": "name the colour",
        "instruction": "Answer with the colour.",
        "template": "Colour: {input}",
        "output": {"kind": "label", "labels": WORDS, "max_new_tokens": 4},
        "verifiers": ["label_in_set"],
        "metric": "accuracy",
        "data": {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test.jsonl"},
    }


def color_examples(n: int, offset: int = 0) -> list[Example]:
    """``n`` examples: input mentions one colour word, output is that word."""
    return [Example(f"item {i} is {WORDS[i % 3]}", WORDS[i % 3]) for i in range(offset, offset + n)]


def color_suite_at(folder: Path) -> Path:
    """Write the two-task colour suite (colour, and a copy called shade) into ``folder``."""
    for split, n in (("train", 48), ("validation", 6), ("test", 6)):
        write_examples(folder / f"{split}.jsonl", color_examples(n))
    tasks = [color_task_dict("color"), color_task_dict("shade")]
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({"tasks": tasks}))
    return path
