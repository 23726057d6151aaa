"""Calibration of a task with tools: on the calls the student writes, not the plain answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tinyllm.compress.hessian import calibration_texts
from tinyllm.compress.importance import calibration_conversations
from tinyllm.tasks import Example, load_suite, write_examples

CALL = '{"name": "calculator", "arguments": {"expression": "(2) + (3)"}}'


def tool_suite(tmp_path: Path) -> Any:
    examples = [
        Example("Put together 2 and 3.", "5"),
        Example("Put together 2 and 3.", "6"),  # no call gives 6: not a calibration text
        Example("Put together 2 and 3.", "5"),
    ]
    for split in ("train", "validation", "test"):
        write_examples(tmp_path / f"sums-{split}.jsonl", examples)
    task = {
        "name": "sums",
        "description": "sums",
        "instruction": "Call the calculator.",
        "output": {"kind": "text", "max_new_tokens": 8},
        "verifiers": ["number"],
        "metric": "exact_match",
        "data": {s: f"sums-{s}.jsonl" for s in ("train", "validation", "test")},
        "tools": {"names": ["calculator"]},
    }
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"tasks": [task]}))
    return load_suite(tmp_path / "suite.yaml")


def test_pruning_and_quantization_calibrate_a_tool_task_on_its_calls(tmp_path: Path) -> None:
    suite = tool_suite(tmp_path)
    convs = calibration_conversations(suite, suite.tasks, None)
    assert [c[-1] for c in convs] == [{"role": "assistant", "content": CALL}] * 2

    class LastTurn:  # the chat template's part that matters here: the assistant turn
        def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool) -> str:
            return messages[-1]["content"]

    train = [Example("Put together 2 and 3.", "5"), Example("Put together 2 and 3.", "6")]
    assert calibration_texts(suite.tasks[0], train, 2, LastTurn()) == [CALL]
