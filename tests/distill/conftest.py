"""Fixtures for distillation tests: a stub OpenAI-compatible server on loopback, tiny
models, a constructed colour task and small suite files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai_stub import OpenAIStub

from tinyllm import api
from tinyllm.tasks import Example, Suite, TaskSpec, task_from_dict, write_examples


@pytest.fixture()
def openai_stub() -> Iterator[OpenAIStub]:
    """A running stub chat-completions server (``.base_url``, ``.script``, ``.requests``)."""
    stub = OpenAIStub()
    stub.thread.start()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


SUITE_YAML = """
tasks:
  - name: mood
    description: toy sentiment
    instruction: Answer positive or negative.
    output: {kind: label, labels: [negative, positive], max_new_tokens: 3}
    verifiers: [label_in_set]
    metric: accuracy
    data: {train: train.jsonl, validation: val.jsonl, test: test.jsonl}
"""


@pytest.fixture()
def toy_suite(tmp_path: Path) -> Suite:
    """A one-task label suite (mood: positive/negative) with five examples in files."""
    rows = {
        "train.jsonl": [("good", "positive"), ("bad", "negative"), ("fine", "positive")],
        "val.jsonl": [("nice", "positive")],
        "test.jsonl": [("awful", "negative")],
    }
    for name, pairs in rows.items():
        lines = [json.dumps({"input": i, "output": o}) for i, o in pairs]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    (tmp_path / "suite.yaml").write_text(SUITE_YAML)
    return api.load_tasks(tmp_path / "suite.yaml")


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
