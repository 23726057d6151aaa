"""Fixtures for trainer tests: a tiny model, a constructed task and a tiny suite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tinyllm.tasks import Example, TaskSpec, task_from_dict, write_examples

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


@pytest.fixture()
def color_task() -> TaskSpec:
    return task_from_dict(color_task_dict(), "test task")


@pytest.fixture()
def tiny_model(tiny_llama_bundle: Path) -> Any:
    """A fresh tiny-llama transformers model with its tokenizer (LoadedModel)."""
    import tinyllm

    return tinyllm.load_torch_model(tiny_llama_bundle)


@pytest.fixture()
def color_suite(tmp_path: Path) -> Path:
    """A suite file with two small tasks (colour, and a copy called shade) on JSONL files."""
    for split, n in (("train", 48), ("validation", 6), ("test", 6)):
        write_examples(tmp_path / f"{split}.jsonl", color_examples(n))
    tasks = [color_task_dict("color"), color_task_dict("shade")]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"tasks": tasks}))
    return path


@pytest.fixture()
def examples() -> Any:
    """Function ``(n, offset=0) -> list[Example]`` of colour examples."""
    return color_examples
