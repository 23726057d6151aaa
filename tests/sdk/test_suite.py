"""Built-in data builders: deterministic splits (same sha256 across runs), disjoint, checked."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tinyllm.api import load_tasks
from tinyllm.errors import TaskError
from tinyllm.suite import builders, data_dir, prepare
from tinyllm.suite import dates as dates_builder
from tinyllm.suite import sentiment as sentiment_builder
from tinyllm.tasks import DataSpec, TaskSpec
from tinyllm.verifiers import verify

SMALL = {"train": 40, "validation": 10, "test": 12}


def small(task: TaskSpec, seed: int = 0) -> TaskSpec:
    return dataclasses.replace(
        task, data=DataSpec(builder=task.data.builder, sizes=SMALL, seed=seed)
    )


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TINYLLM_CACHE", str(tmp_path))
    return tmp_path


def read(task: TaskSpec, split: str) -> list[dict]:
    lines = (data_dir(task) / f"{split}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("name", ["arithmetic", "booking", "intent", "dates", "rewrite"])
def test_generated_splits_are_deterministic_disjoint_and_valid(cache: Path, name: str) -> None:
    task = small(load_tasks().task(name))
    first = prepare(task)
    again = prepare(task, force=True)
    assert first == again  # same sha256 for every split across runs
    assert set(first) == {"train", "validation", "test"}
    other = prepare(small(load_tasks().task(name), seed=1))
    assert other["test"] != first["test"]
    inputs = {s: [r["input"] for r in read(task, s)] for s in first}
    assert [len(inputs[s]) for s in ("train", "validation", "test")] == [40, 10, 12]
    assert not set(inputs["train"]) & set(inputs["test"])
    assert not set(inputs["validation"]) & set(inputs["test"])
    # Every reference passes the task's own verifiers.
    for record in read(task, "train"):
        assert verify(task, record["output"]).ok, record


def test_cached_data_is_reused_and_rebuilt_when_tampered(cache: Path) -> None:
    task = small(load_tasks().task("booking"))
    digests = prepare(task)
    test_file = data_dir(task) / "test.jsonl"
    test_file.write_text("tampered\n")
    assert prepare(task) == digests  # checksum mismatch -> rebuilt
    assert hashlib.sha256(test_file.read_bytes()).hexdigest() == digests["test"]


def test_date_labels_agree_with_dateparser(cache: Path) -> None:
    task = small(load_tasks().task("dates"))
    prepare(task)
    for record in read(task, "test"):
        ref = record["input"].split("Reference time: ")[1][:16]
        parsed = dates_builder.parse(record["meta"]["expression"], datetime.fromisoformat(ref))
        assert parsed is not None and parsed.strftime("%Y-%m-%dT%H:%M") == record["output"]


def test_sentiment_from_the_vader_sdist(cache: Path) -> None:
    task = small(load_tasks().task("sentiment"))
    first = prepare(task)
    assert prepare(task, force=True) == first
    records = read(task, "train") + read(task, "test")
    assert {r["output"] for r in records} <= {"negative", "neutral", "positive"}
    for r in records:
        assert r["output"] == sentiment_builder.label(r["meta"]["score"])
    rows = sentiment_builder.read_ratings(cache / "downloads" / sentiment_builder.SDIST)
    assert len(rows) == 23703  # the four GroundTruth files
    assert {source for _, _, source in rows} == set(sentiment_builder.SETS)


def test_corrupt_download_is_rejected_and_deleted(cache: Path) -> None:
    downloads = cache / "downloads"
    downloads.mkdir()
    (downloads / sentiment_builder.SDIST).write_bytes(b"not the sdist")
    with pytest.raises(TaskError, match=r"sha256 .* is not the expected"):
        sentiment_builder.fetch_sdist(downloads)
    assert not (downloads / sentiment_builder.SDIST).exists()


def test_unknown_builder_and_file_tasks(cache: Path) -> None:
    task = load_tasks().task("booking")
    bad = dataclasses.replace(task, data=DataSpec(builder="wikipedia"))
    with pytest.raises(TaskError, match="unknown data builder 'wikipedia'"):
        prepare(bad)
    files = dataclasses.replace(task, data=DataSpec(train="a", validation="b", test="c"))
    with pytest.raises(TaskError, match="reads its data from files"):
        prepare(files)
    assert "vader-sentiment" in builders()


def test_splits_are_identical_across_processes(tmp_path: Path) -> None:
    """Builders iterate over sets (Faker, mathematics_dataset): the hash seed must not matter."""
    script = (
        "import dataclasses, json\n"
        "from tinyllm.api import load_tasks\n"
        "from tinyllm.suite import prepare\n"
        "from tinyllm.tasks import DataSpec\n"
        "out = {}\n"
        "for name in ('booking', 'arithmetic'):\n"
        "    t = load_tasks().task(name)\n"
        f"    spec = DataSpec(builder=t.data.builder, sizes={SMALL!r}, seed=0)\n"
        "    out[name] = prepare(dataclasses.replace(t, data=spec))\n"
        "print(json.dumps(out))\n"
    )
    runs = []
    for hash_seed in ("1", "2"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": hash_seed,
            "TINYLLM_CACHE": str(tmp_path / hash_seed),
        }
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    assert runs[0] == runs[1]


def test_generated_data_does_not_depend_on_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faker's date and time methods draw up to the current time; the builders must not
    use them, or the same seed gives other data on another day (it did for intents)."""
    import datetime as real

    import faker.providers.date_time as faker_clock

    from tinyllm.suite import booking, dates, intents, rewrite

    class Later(real.datetime):
        @classmethod
        def now(cls, tz: real.tzinfo | None = None) -> real.datetime:  # type: ignore[override]
            return real.datetime(2031, 5, 17, 13, 37, tzinfo=tz)

    sizes = {"train": 30, "validation": 5, "test": 10}
    for builder in (intents, booking, rewrite, dates):
        first = builder.build(sizes, 0, Path("."))
        monkeypatch.setattr(faker_clock, "datetime", Later)
        again = builder.build(sizes, 0, Path("."))
        monkeypatch.undo()
        assert first == again, builder.__name__
