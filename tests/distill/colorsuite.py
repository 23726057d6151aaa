"""The constructed colour tasks of the distillation tests: a 3-label task whose answer is
the colour word named in the input, its examples, and a two-task suite on JSONL files;
the inputs of a curriculum run on that suite, and what differs between two such runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

import tinyllm
from tinyllm.suite import load_split
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


def curriculum_inputs(bundle: Path, suite_path: Path) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    """``run_curriculum``'s model, suite, tasks and data: color's 48 training examples
    (high-resource) and shade's first 24 (low-resource)."""
    loaded = tinyllm.load_torch_model(bundle)
    suite = tinyllm.api.load_tasks(suite_path)
    selected = suite.select(None)
    examples = {t.name: load_split(suite, t, "train", None) for t in selected}
    return loaded, suite, selected, {"color": examples["color"], "shade": examples["shade"][:24]}


def run_differences(a: Any, b: Any, tol: float) -> list[str]:
    """What differs between two curriculum runs (``report``, per-task ``losses`` and snapshot
    ``adapters``) beyond ``tol``: decisions and early-stop points, losses, adapters."""
    found = []
    if a.report != b.report:
        found.append(f"decisions: {a.report} != {b.report}")
    for task in a.losses:
        x, y = np.asarray(a.losses[task]), np.asarray(b.losses.get(task, []))
        if x.shape != y.shape or np.abs(x - y).max() > tol:
            found.append(f"{task} losses: {x.tolist()} != {y.tolist()}")
        for name, value in a.adapters[task].tensors.items():
            if np.abs(value - b.adapters[task].tensors[name]).max() > tol:
                found.append(f"{task} snapshot differs at {name}")
                break
    return found
