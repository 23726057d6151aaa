"""Fixtures for distillation tests: a stub OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_stub import OpenAIStub

from tinyllm import api
from tinyllm.tasks import Suite


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
