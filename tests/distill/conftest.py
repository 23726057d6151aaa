"""Fixtures for distillation tests: a stub OpenAI-compatible server on loopback, tiny
models, a constructed colour task and small suite files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from colorsuite import color_examples, color_suite_at, color_task_dict
from openai_stub import OpenAIStub

from tinyllm import api
from tinyllm.tasks import Suite, TaskSpec, task_from_dict


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
    return color_suite_at(tmp_path)


@pytest.fixture()
def examples() -> Any:
    """Function ``(n, offset=0) -> list[Example]`` of colour examples."""
    return color_examples
