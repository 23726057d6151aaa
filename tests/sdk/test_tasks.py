"""Task specs and suites: validation errors name the task and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tinyllm.api import load_tasks
from tinyllm.errors import ConfigError, TaskError
from tinyllm.suite import load_split
from tinyllm.tasks import load_suite

GOOD = {
    "name": "greet",
    "description": "d",
    "instruction": "Say hi.",
    "output": {"kind": "label", "labels": ["hi", "bye"]},
    "metric": "accuracy",
    "data": {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"},
}


def write_suite(tmp_path: Path, *tasks: dict) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({"tasks": list(tasks)}))
    return path


def test_builtin_suite_has_six_tasks_of_varied_resource_levels() -> None:
    suite = load_tasks("builtin")
    names = [t.name for t in suite.tasks]
    assert names == ["sentiment", "arithmetic", "booking", "intent", "dates", "rewrite"]
    assert {t.output.kind for t in suite.tasks} == {"label", "json", "text"}
    assert len(suite.task("intent").output.labels) >= 10
    train = {t.name: t.data.sizes.get("train", 22703) for t in suite.tasks}
    assert train["sentiment"] > 10_000 and train["arithmetic"] >= 10_000
    assert train["dates"] < 500 and train["rewrite"] < 500


def test_file_suite_loads_examples(tmp_path: Path) -> None:
    for name in ("train", "val", "test"):
        (tmp_path / f"{name}.jsonl").write_text(
            json.dumps({"input": f"{name} hello", "output": "hi"}) + "\n\n"
        )
    suite = load_suite(write_suite(tmp_path, GOOD))
    (example,) = load_split(suite, suite.task("greet"), "test")
    assert (example.input, example.output, example.meta) == ("test hello", "hi", {})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, r"task 'greet': unknown key 'colour'"),
        (
            {"output": {"kind": "label", "labels": ["a", "b"], "size": 1}},
            "output: unknown key 'size'",
        ),
        ({"output": {"kind": "json", "schema": {"type": "objekt"}}}, "not a valid JSON Schema"),
        ({"output": {"kind": "json"}}, "needs output.schema"),
        ({"output": {"kind": "label", "labels": ["only"]}}, "at least two labels"),
        ({"output": {"kind": "prose"}}, "kind: 'prose' is not one of"),
        ({"metric": "bleu"}, "metric 'bleu' is not one of"),
        ({"verifiers": ["vibes"]}, "verifier 'vibes' is not one of"),
        ({"template": "no placeholder"}, "template must contain"),
        ({"data": {"train": "t.jsonl"}}, "needs a builder or train/validation/test files"),
        ({"data": {"builder": "x", "sizes": {"dev": 3}}}, "unknown split 'dev'"),
        ({"name": "bad name!"}, "name must be letters"),
    ],
)
def test_spec_errors_name_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(tmp_path, {**GOOD, **change}))


def test_suite_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such suite file"):
        load_suite(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("tasks: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="one key, 'tasks'"):
        load_suite(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="'greet' is defined twice"):
        load_suite(write_suite(tmp_path, GOOD, GOOD))


def test_missing_and_malformed_data_files(tmp_path: Path) -> None:
    suite = load_suite(write_suite(tmp_path, GOOD))
    with pytest.raises(TaskError, match=r"data file .*test\.jsonl does not exist"):
        load_split(suite, suite.task("greet"), "test")
    (tmp_path / "test.jsonl").write_text('{"input": "x"}\n')
    with pytest.raises(TaskError, match=r"test\.jsonl:1: missing key 'output'"):
        load_split(suite, suite.task("greet"), "test")
    (tmp_path / "test.jsonl").write_text("{oops\n")
    with pytest.raises(TaskError, match=r"test\.jsonl:1: not valid JSON"):
        load_split(suite, suite.task("greet"), "test")


def test_unknown_task_lists_known_ones() -> None:
    with pytest.raises(TaskError, match="unknown task 'summarize'; this suite has: sentiment"):
        load_tasks("builtin").task("summarize")


def test_data_and_suite_files_that_are_not_utf8(tmp_path: Path) -> None:
    from tinyllm.tasks import read_examples

    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"input": "ok", "output": "hi"}\n{"input": "caf\xe9", "output": "hi"}\n')
    with pytest.raises(TaskError, match=r"train\.jsonl:2: not UTF-8 text"):
        read_examples(data, "task 'greet'")
    suite = tmp_path / "suite.yaml"
    suite.write_bytes(b"tasks:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"suite\.yaml: not UTF-8 text"):
        load_suite(suite)


def test_tools_in_a_task_spec_round_trip_and_tasks_without_keep_their_form() -> None:
    import dataclasses

    from tinyllm.tasks import ToolUse, task_from_dict
    from tinyllm.tasktable import spec_hash

    plain = load_tasks().task("arithmetic")
    assert "tools" not in plain.to_dict()  # manifests and task-table hashes as before
    tool_task = dataclasses.replace(plain, tools=ToolUse(["calculator"], "context"))
    back = task_from_dict(tool_task.to_dict(), "test")
    assert back == tool_task and back.tools == ToolUse(["calculator"], "context", 96)
    assert spec_hash(back) != spec_hash(plain)
    with pytest.raises(ConfigError, match="distinct tool names"):
        ToolUse(["calculator", "calculator"])
    with pytest.raises(ConfigError, match="'answer' or 'context'"):
        ToolUse(["calculator"], "later")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_call_tokens must be >= 8"):
        ToolUse(["calculator"], max_call_tokens=2)
