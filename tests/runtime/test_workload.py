"""Workloads: synthetic completions, the task mix, JSONL requests and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyllm.errors import ConfigError
from tinyllm.runtime.loadgen import Load
from tinyllm.runtime.workload import WorkItem, read_jsonl, synthetic, task_mix


def test_synthetic_completions_have_exact_lengths() -> None:
    items = synthetic(3, 17, 5, vocab=512, seed=1)
    assert [len(i.ids or ()) for i in items] == [17, 17, 17]
    assert all(i.max_new_tokens == 5 and i.task is None for i in items)
    assert all(100 <= t < 512 for i in items for t in i.ids or ())
    assert synthetic(3, 17, 5, vocab=512, seed=1) == items  # one seed, one workload
    with pytest.raises(ConfigError, match="prompt_len and new_tokens must be >= 1"):
        synthetic(1, 0, 5, vocab=512)


def test_task_mix_is_skewed_and_repeatable() -> None:
    items = task_mix(["a", "b", "c"], 300, seed=0)
    counts = {t: sum(i.task == t for i in items) for t in "abc"}
    assert counts["a"] > counts["b"] > counts["c"] > 0  # Zipf popularity
    assert task_mix(["a", "b", "c"], 300, seed=0) == items
    assert all(i.text and len(i.text.split()) >= 2 for i in items)


def test_jsonl_requests(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"task": "sentiment", "input": "fine"}\n\n{"prompt": "hi", "max_new_tokens": 3}\n'
    )
    assert read_jsonl(path) == [
        WorkItem("sentiment", "fine"),
        WorkItem(None, "hi", max_new_tokens=3),
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"task": "a", "input": "b", "extra": 1}', "unknown key 'extra'"),
        ('{"prompt": "hi", "max_new_tokens": 0}', "max_new_tokens must be an integer >= 1"),
        ('{"input": "b"}', 'give "task" and "input", or "prompt"'),
        ('{"task": 3, "input": "b"}', "a task request is"),
    ],
)
def test_bad_jsonl_lines_name_their_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=f"r.jsonl line 2: {message}"):
        read_jsonl(path)


def test_load_needs_exactly_one_of_rate_and_concurrency() -> None:
    assert Load(rate=2.0).describe() == "rate 2.0/s"
    assert Load(concurrency=3).describe() == "concurrency 3"
    for bad in ({}, {"rate": 1.0, "concurrency": 1}):
        with pytest.raises(ConfigError, match="one of concurrency and rate"):
            Load(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rate must be > 0"):
        Load(rate=0.0)
