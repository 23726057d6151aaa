"""Labelling at scale: concurrency, shards and their merge, failures, a killed run resuming."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from openai_stub import OpenAIStub

from tinyllm import api
from tinyllm.cli import main
from tinyllm.distill.endpoint import OpenAITeacher
from tinyllm.distill.labelling import label_task, read_journal
from tinyllm.distill.labelmerge import merge_shards
from tinyllm.distill.labelpool import Shard, label_concurrently, shard_of
from tinyllm.distill.teachers import TeacherError
from tinyllm.durability import WriterLock
from tinyllm.errors import BundleLockedError, ConfigError
from tinyllm.tasks import Suite, TaskSpec, read_examples

SENTIMENT = api.load_tasks("builtin").task("sentiment")
INPUTS = [f"review number {i}" for i in range(40)]


def answer(text: str) -> str:
    return "positive" if int(text.rsplit(" ", 1)[1]) % 2 else "negative"


class SlowTeacher:
    """Answers after ``delay`` seconds; records the peak number of calls in flight and
    fails (TeacherError) on the inputs in ``fail``."""

    def __init__(self, delay: float = 0.0, fail: Sequence[str] = (), gate: int = 0) -> None:
        self.name = "slow"
        self.delay, self.fail = delay, set(fail)
        self.asked: list[str] = []
        self.active = self.peak = 0
        self.lock = threading.Lock()
        self.gate, self.opened = gate, threading.Event()  # hold calls until `gate` are in

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.asked.extend(inputs)
            if self.active >= self.gate:
                self.opened.set()
        try:
            self.opened.wait(timeout=30)
            time.sleep(self.delay)
            if self.fail & set(inputs):
                raise TeacherError(f"teacher failed on {sorted(self.fail & set(inputs))}")
            return [[answer(text)] for text in inputs]
        finally:
            with self.lock:
                self.active -= 1


def journal_inputs(path: Path) -> list[str]:
    return [r["input"] for r in read_journal(path)]


def test_concurrency_keeps_n_calls_in_flight_and_labels_each_input_once(tmp_path: Path) -> None:
    teacher = SlowTeacher(delay=0.01, gate=8)  # the first calls wait until 8 are in flight
    stats = label_task(
        SENTIMENT, INPUTS, teacher, tmp_path, k=1, batch_size=2, concurrency=8, progress=False
    )
    assert teacher.opened.is_set() and teacher.peak == 8  # the window fills, never more
    assert stats.labelled == stats.accepted == 40
    assert sorted(teacher.asked) == sorted(INPUTS)
    assert sorted(journal_inputs(tmp_path / "sentiment.journal.jsonl")) == sorted(INPUTS)
    labelled = {e.input: e.output for e in read_examples(tmp_path / "sentiment.jsonl", "t")}
    assert labelled == {text: answer(text) for text in INPUTS}


def test_serial_labelling_is_one_call_at_a_time(tmp_path: Path) -> None:
    teacher = SlowTeacher(delay=0.01, gate=2)  # would wait for a second call: none comes
    teacher.opened.set()
    label_task(SENTIMENT, INPUTS[:6], teacher, tmp_path, k=1, batch_size=1, progress=False)
    assert teacher.peak == 1 and teacher.asked == INPUTS[:6]


def test_a_failing_chunk_keeps_the_finished_ones_and_a_rerun_resumes(tmp_path: Path) -> None:
    bad = INPUTS[13]
    failing = SlowTeacher(delay=0.02, fail=[bad])
    with pytest.raises(TeacherError, match="teacher failed on"):
        label_task(
            SENTIMENT, INPUTS, failing, tmp_path, k=1, batch_size=2, concurrency=4, progress=False
        )
    journal = tmp_path / "sentiment.journal.jsonl"
    kept = journal_inputs(journal)
    assert bad not in kept and INPUTS[12] not in kept  # the failed chunk (12, 13) is not kept
    assert 12 <= len(kept) < 40  # the chunks before it and those in flight are kept
    assert len(failing.asked) < 40  # no new chunk started after the failure
    working = SlowTeacher()
    stats = label_task(
        SENTIMENT, INPUTS, working, tmp_path, k=1, batch_size=2, concurrency=4, progress=False
    )
    assert sorted(working.asked) == sorted(set(INPUTS) - set(kept))  # nothing relabelled
    assert stats.resumed == len(kept) and stats.labelled == 40
    assert sorted(journal_inputs(journal)) == sorted(INPUTS)  # no duplicates


def test_label_concurrently_reports_the_first_error_and_rejects_bad_concurrency() -> None:
    done: list[int] = []

    def work(chunk: int) -> int:
        if chunk == 3:
            raise ValueError("chunk 3 broke")
        return chunk * 10

    with pytest.raises(ValueError, match="chunk 3 broke"):
        label_concurrently(list(range(10)), work, lambda c, r: done.append(r), 1)
    assert done == [0, 10, 20]  # serial: nothing after the failure
    with pytest.raises(ConfigError, match="concurrency must be >= 1"):
        label_concurrently([1], work, lambda c, r: None, 0)
    with pytest.raises(ConfigError, match="concurrency must be >= 1"):
        label_task(SENTIMENT, ["x"], SlowTeacher(), "unused", concurrency=0)


def test_a_killed_run_resumes_without_duplicates(tmp_path: Path) -> None:
    """SIGKILL in the middle of a concurrent run (a forked child), then a full rerun."""
    teacher = SlowTeacher(delay=0.01)
    pid = os.fork()
    if pid == 0:  # the child: dies at its 9th teacher call, chunks in flight
        calls = 0
        original = teacher.label

        def dying(*args: object, **kwargs: object) -> list[list[str]]:
            nonlocal calls
            calls += 1
            if calls == 9:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        teacher.label = dying  # type: ignore[method-assign]
        try:
            label_task(
                SENTIMENT, INPUTS, teacher, tmp_path, k=1, batch_size=3, concurrency=4,
                progress=False,
            )  # fmt: skip
        finally:
            os._exit(3)  # never reached: the kill comes first
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    journal = tmp_path / "sentiment.journal.jsonl"
    before = journal_inputs(journal)
    assert 0 < len(before) < 40 and len(set(before)) == len(before)
    rerun = SlowTeacher()
    stats = label_task(
        SENTIMENT, INPUTS, rerun, tmp_path, k=1, batch_size=3, concurrency=4, progress=False
    )
    assert sorted(rerun.asked) == sorted(set(INPUTS) - set(before))
    after = journal_inputs(journal)
    assert sorted(after) == sorted(INPUTS) and stats.resumed == len(before)


def test_shards_split_the_inputs_by_hash_and_merge_back(tmp_path: Path) -> None:
    shards = [Shard(i, 3) for i in range(3)]
    parts = [s.select(INPUTS) for s in shards]
    assert sorted(t for part in parts for t in part) == sorted(INPUTS) and all(parts)
    assert Shard(1, 3).select(list(reversed(INPUTS))) == list(reversed(parts[1]))  # order-free
    for shard in shards:
        stats = label_task(
            SENTIMENT, INPUTS, SlowTeacher(), tmp_path, k=1, concurrency=2, shard=shard,
            progress=False,
        )  # fmt: skip
        assert stats.labelled == len(parts[shard.index])
        assert (tmp_path / f"sentiment.{shard.stem}.stats.json").is_file()
    assert not (tmp_path / "sentiment.jsonl").exists()  # shards write journals only
    merged = merge_shards(SENTIMENT, INPUTS, tmp_path, 3)
    assert merged.labelled == merged.accepted == 40
    labelled = read_examples(tmp_path / "sentiment.jsonl", "merged")
    assert [e.input for e in labelled] == INPUTS  # in input order
    assert all(e.output == answer(e.input) for e in labelled)
    # The merged journal lets an unsharded rerun resume: nothing is relabelled.
    again = SlowTeacher()
    label_task(SENTIMENT, INPUTS, again, tmp_path, k=1, progress=False)
    assert again.asked == []


def test_merge_refuses_missing_shards_unlabelled_inputs_and_foreign_records(
    tmp_path: Path,
) -> None:
    label_task(SENTIMENT, INPUTS, SlowTeacher(), tmp_path, k=1, shard=Shard(0, 2), progress=False)
    with pytest.raises(ConfigError, match=r"no journal .* for shard\(s\) 1/2"):
        merge_shards(SENTIMENT, INPUTS, tmp_path, 2)
    half = Shard(1, 2).select(INPUTS)[:3]
    label_task(SENTIMENT, half, SlowTeacher(), tmp_path, k=1, shard=Shard(1, 2), progress=False)
    missing = len(Shard(1, 2).select(INPUTS)) - 3
    with pytest.raises(ConfigError, match=f"{missing} of 40 inputs are not labelled yet "):
        merge_shards(SENTIMENT, INPUTS, tmp_path, 2)
    # A record of shard 0's journal in shard 1's journal: the shard counts differ.
    foreign = read_journal(tmp_path / "sentiment.shard-0-of-2.journal.jsonl")[0]
    with (tmp_path / "sentiment.shard-1-of-2.journal.jsonl").open("a") as f:
        f.write(json.dumps(foreign) + "\n")
    with pytest.raises(ConfigError, match="belongs to shard 0/2, not 1/2"):
        merge_shards(SENTIMENT, INPUTS, tmp_path, 2)


def test_shard_parsing_and_hashing() -> None:
    assert Shard.parse("2/5") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    for bad in ("5/5", "-1/2", "a/2", "3", "1/0"):
        with pytest.raises(ConfigError, match="shard"):
            Shard.parse(bad)
    assert shard_of("x", 1) == 0
    assert shard_of("review", 7) == shard_of("review", 7)  # a pure function of the text
    counts = [sum(shard_of(f"input {i}", 4) == s for i in range(4000)) for s in range(4)]
    assert min(counts) > 900  # about a quarter each


def test_two_labellers_of_one_journal_are_refused(tmp_path: Path) -> None:
    with WriterLock(tmp_path / "sentiment.shard-0-of-2.journal.jsonl"):
        with pytest.raises(BundleLockedError, match="being written by another process"):
            label_task(
                SENTIMENT, INPUTS, SlowTeacher(), tmp_path, k=1, shard=Shard(0, 2), progress=False
            )
        label_task(  # another shard has its own journal
            SENTIMENT, INPUTS, SlowTeacher(), tmp_path, k=1, shard=Shard(1, 2), progress=False
        )


def test_a_429_pauses_every_worker_together(openai_stub: OpenAIStub) -> None:
    waits: list[float] = []
    teacher = OpenAITeacher(openai_stub.base_url, "m", sleep=waits.append)
    openai_stub.script = [("429", 3)]
    teacher.label(SENTIMENT, ["a"], k=1)
    assert waits == [3.0]  # the thread that got the 429 sleeps Retry-After itself
    waits.clear()
    worker = threading.Thread(target=teacher._wait_for_slot)
    worker.start()
    worker.join()
    assert waits and 2.5 < waits[0] <= 3.0  # another thread waits out the same pause


def test_api_and_cli_shards_concurrency_and_merge(
    toy_suite: Suite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite_file = str(toy_suite.root / "suite.yaml")
    out = tmp_path / "labels"
    for i in range(2):
        main(["data", "label", suite_file, "--teacher", "oracle", "-o", str(out),
              "--shard", f"{i}/2", "--concurrency", "3", "--batch-size", "1"])  # fmt: skip
    capsys.readouterr()
    main(["data", "merge", suite_file, "-o", str(out), "--shards", "2"])
    table = capsys.readouterr().out
    assert next(line.split() for line in table.splitlines() if line.startswith("mood"))[:3] == [
        "mood", "3", "3",
    ]  # fmt: skip
    stats = api.merge_labels(suite_file, out, 2)
    assert [(s.task, s.labelled) for s in stats] == [("mood", 3)]
    with pytest.raises(ConfigError, match="--shard must be I/N"):
        api.label_data(suite_file, "oracle", out, shard="1")
    with pytest.raises(ConfigError, match="concurrency"):
        api.label_data(suite_file, "oracle", out, concurrency=0)
