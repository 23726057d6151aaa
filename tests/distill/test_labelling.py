"""Rejection sampling keeps only verified samples; a crashed run resumes without relabelling."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from tinyllm import api
from tinyllm.cli import main
from tinyllm.distill.labelling import choose, label_task, read_journal
from tinyllm.distill.teachers import TeacherError
from tinyllm.errors import ConfigError
from tinyllm.tasks import Suite, TaskSpec, read_examples

SUITE = api.load_tasks("builtin")
SENTIMENT = SUITE.task("sentiment")
BOOKING = SUITE.task("booking")


class ScriptedTeacher:
    """Answers from a table input -> candidates; counts every input it is asked about."""

    def __init__(self, table: dict[str, list[str]], crash_after: int | None = None) -> None:
        self.name = "scripted"
        self.table = table
        self.crash_after = crash_after
        self.asked: list[str] = []

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        if self.crash_after is not None and len(self.asked) >= self.crash_after:
            raise RuntimeError("simulated crash")
        self.asked.extend(inputs)
        return [self.table[text][:k] for text in inputs]


def test_choose_keeps_the_most_frequent_passing_candidate() -> None:
    got = choose(SENTIMENT, ["great", "positive", "negative", "positive", "negative"])
    assert (got.answer, got.votes, got.passing) == ("positive", 2, 4)
    assert got.reasons == ["label_in_set: output is not one of the task's labels"]
    tie = choose(SENTIMENT, ["negative", "positive"])
    assert tie.answer == "negative"  # ties go to the earliest candidate
    none = choose(SENTIMENT, ["great", "meh"])
    assert none.answer is None and len(none.reasons) == 2


def test_choose_compares_json_by_value() -> None:
    a = '{"city": "Oslo", "date": "2025-01-02", "guests": 2}'
    b = '{"guests": 2, "city": "Oslo", "date": "2025-01-02"}'
    c = '{"city": "Bergen", "date": "2025-01-02", "guests": 2}'
    got = choose(BOOKING, [c, a, b, '{"city": "Oslo"}'])
    assert got.answer == a and got.votes == 2 and got.passing == 3
    assert got.reasons == ["json_schema: JSON does not match the schema"]


def test_rejection_sampling_keeps_only_verified_samples(tmp_path: Path) -> None:
    table = {
        "good day": ["positive", "positive", "nice"],
        "bad day": ["awful", "horrible"],
        "a day": ["neutral"],
    }
    stats = label_task(
        SENTIMENT, list(table), ScriptedTeacher(table), tmp_path, k=3, progress=False
    )
    accepted = read_examples(tmp_path / "sentiment.jsonl", "test")
    assert [(e.input, e.output) for e in accepted] == [
        ("good day", "positive"),
        ("a day", "neutral"),
    ]
    assert accepted[0].meta["votes"] == 2 and accepted[0].meta["teacher"] == "scripted"
    rejected = [
        json.loads(x) for x in (tmp_path / "sentiment.rejected.jsonl").read_text().splitlines()
    ]
    assert rejected == [
        {
            "input": "bad day",
            "candidates": ["awful", "horrible"],
            "reasons": ["label_in_set: output is not one of the task's labels"] * 2,
        }
    ]
    assert (stats.labelled, stats.accepted, stats.candidates, stats.passing_candidates) == (
        3,
        2,
        6,
        3,
    )
    assert stats.acceptance_rate == pytest.approx(2 / 3)
    saved = json.loads((tmp_path / "sentiment.stats.json").read_text())
    assert saved["reasons"] == {"label_in_set: output is not one of the task's labels": 3}
    assert saved["acceptance_rate"] == pytest.approx(2 / 3)


def test_resumption_after_a_crash_relabels_nothing(tmp_path: Path) -> None:
    table = {f"text {i}": ["positive" if i % 2 else "bad"] for i in range(10)}
    inputs = list(table)
    crashing = ScriptedTeacher(table, crash_after=4)  # dies in its third batch of 2
    with pytest.raises(RuntimeError, match="simulated crash"):
        label_task(SENTIMENT, inputs, crashing, tmp_path, k=1, batch_size=2, progress=False)
    journal = tmp_path / "sentiment.journal.jsonl"
    assert [r["input"] for r in read_journal(journal)] == inputs[:4]
    # A crash in the middle of a write leaves a torn line: it is dropped and relabelled.
    with journal.open("a") as f:
        f.write('{"input": "text 4", "outp')
    counting = ScriptedTeacher(table)
    stats = label_task(SENTIMENT, inputs, counting, tmp_path, k=1, batch_size=2, progress=False)
    assert counting.asked == inputs[4:]
    assert (stats.labelled, stats.accepted, stats.resumed) == (10, 5, 4)
    assert [r["input"] for r in read_journal(journal)] == inputs
    again = ScriptedTeacher(table)
    label_task(SENTIMENT, inputs, again, tmp_path, k=1, batch_size=2, progress=False)
    assert again.asked == []


def test_resuming_with_another_teacher_config_is_an_error(tmp_path: Path) -> None:
    table = {"x": ["positive"]}
    label_task(SENTIMENT, ["x"], ScriptedTeacher(table), tmp_path, k=1, progress=False)
    with pytest.raises(ConfigError, match="holds labels from teacher 'scripted' \\(k=1"):
        label_task(SENTIMENT, ["x"], ScriptedTeacher(table), tmp_path, k=2, progress=False)


def test_a_teacher_returning_the_wrong_shape_is_a_clear_error(tmp_path: Path) -> None:
    teacher = ScriptedTeacher({"x": ["positive", "positive"]})
    with pytest.raises(TeacherError, match="more than k=1"):
        teacher.label = lambda task, inputs, k=1, temperature=0.0: [["a", "b"]]  # type: ignore[method-assign]
        label_task(SENTIMENT, ["x"], teacher, tmp_path, k=1, progress=False)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    teacher = ScriptedTeacher({})
    with pytest.raises(ConfigError, match="k must be >= 1"):
        label_task(SENTIMENT, [], teacher, tmp_path, k=0)
    with pytest.raises(ConfigError, match="batch_size"):
        label_task(SENTIMENT, [], teacher, tmp_path, batch_size=0)


def test_label_data_and_cli_with_the_oracle(
    toy_suite: Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite_file = str(toy_suite.root / "suite.yaml")
    stats = api.label_data(suite_file, "oracle", tmp_path / "a", k=2, limit=2, progress=False)
    assert [(s.task, s.labelled, s.accepted) for s in stats] == [("mood", 2, 2)]
    labelled = read_examples(tmp_path / "a" / "mood.jsonl", "test")
    assert [(e.input, e.output) for e in labelled] == [("good", "positive"), ("bad", "negative")]
    main(["data", "label", suite_file, "--teacher", "oracle", "-o", str(tmp_path / "b")])
    assert row(capsys.readouterr().out) == ["mood", "3", "3", "100.0%", "0", "-"]
    main(["data", "label", suite_file, "--teacher", "oracle", "-o", str(tmp_path / "b")])
    assert row(capsys.readouterr().out) == ["mood", "3", "3", "100.0%", "3", "-"]  # resumed


def row(table: str) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.startswith("mood"))


def test_label_data_rejects_bad_arguments(toy_suite: Suite, tmp_path: Path) -> None:
    suite_file = toy_suite.root / "suite.yaml"
    with pytest.raises(ConfigError, match="limit"):
        api.label_data(suite_file, "oracle", tmp_path, limit=0)
    with pytest.raises(ConfigError, match="unknown teacher"):
        api.label_data(suite_file, "gpt", tmp_path)


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["positive", None], "returned a NoneType candidate for input 'x'"),
        ([3], "returned a int candidate for input 'x'"),
        ([b"positive"], "returned a bytes candidate for input 'x'"),
        ("positive", "returned a str instead of a list of candidates for input 'x'"),
        (None, "returned a NoneType instead of a list of candidates for input 'x'"),
    ],
)
def test_a_teacher_returning_none_or_non_strings_is_a_clear_error(
    tmp_path: Path, answers: object, message: str
) -> None:
    teacher = ScriptedTeacher({})
    teacher.label = lambda task, inputs, k=1, temperature=0.0: [answers]  # type: ignore[method-assign]
    with pytest.raises(TeacherError, match=f"teacher 'scripted' {message}"):
        label_task(SENTIMENT, ["x"], teacher, tmp_path, k=2, progress=False)
    assert read_journal(tmp_path / "sentiment.journal.jsonl") == []  # nothing journaled


def test_a_journal_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    journal = tmp_path / "sentiment.journal.jsonl"
    journal.write_bytes(b'{"input": "caf\xe9"}\n')  # Latin-1, not UTF-8
    with pytest.raises(ConfigError, match=r"sentiment\.journal\.jsonl:1: not UTF-8"):
        label_task(SENTIMENT, ["x"], ScriptedTeacher({"x": ["positive"]}), tmp_path, k=1)
    journal.write_bytes(b'["a list"]\n{"input": "x"}\n')
    with pytest.raises(ConfigError, match=r"journal\.jsonl:1: a journal line must be an object"):
        label_task(SENTIMENT, ["x"], ScriptedTeacher({"x": ["positive"]}), tmp_path, k=1)
