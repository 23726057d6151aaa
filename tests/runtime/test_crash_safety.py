"""kill -9 at many points of each writer: the result is the old state or the new one.

Each writer runs in a forked child killed by SIGKILL at chosen file-system steps
(tests/crashpoints.py): every step of the commit (fsync, rename, swap, clean-up) and a
spread over the rest, torn writes included, plus kills at random times (inside a
safetensors save, say). After every kill the bundle opens, with its sha256 checked, as the
old bundle or the new one (or, without an atomic swap, gives a BundleError that says how
to recover), and re-running the writer finishes the job and leaves no staging folder.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import tinyllm
from tinyllm.bundle import Bundle
from tinyllm.errors import BundleError
from tinyllm.tasks import TaskSpec

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fork and SIGKILL are POSIX")

from crashpoints import (  # noqa: E402  (tests/ is on sys.path)
    count_events,
    kill_points,
    run_and_kill_after,
    run_child,
    was_killed,
)

SUITE = tinyllm.api.load_tasks()
# More kills per writer for a long run (docs/reliability.md): the spread of kill points and
# the random-time kills are multiplied by this.
SCALE = int(os.environ.get("TINYLLM_KILL_SCALE", "1"))


@pytest.fixture(autouse=True)
def _no_hash_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash cache's writes depend on file ages: off, so every run takes the same steps."""
    monkeypatch.setenv("TINYLLM_HASH_CACHE", "off")


def _leftovers(out: Path) -> list[str]:
    """Hidden staging, set-aside and lock files of writes to ``out``."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def _state(out: Path, is_new: Callable[[Bundle], bool], fresh: bool) -> str:
    """'old', 'new', 'absent' (a fresh write not done) or 'kept' (a clear recovery error)."""
    try:
        bundle = Bundle.open(out)  # sha256 of every file checked
    except BundleError as e:
        if fresh and not out.exists() and "does not exist" in str(e):
            return "absent"
        assert "move it back, or re-run the write" in str(e), str(e)
        return "kept"
    return "new" if is_new(bundle) else "old"


def _trials(
    tmp_path: Path,
    reset: Callable[[], None],
    write: Callable[[], None],
    is_new: Callable[[Bundle], bool],
    out: Path,
    *,
    fresh: bool = False,
    extra: list | None = None,
    spread: int = 12,
    tail: int = 8,
    random_kills: int = 4,
) -> dict[str, int]:
    """Kill ``write`` at many points; check each outcome and that a re-run recovers."""
    count_file = str(tmp_path / "events")
    reset()
    write()  # warm the parent's caches, so the children take the same steps as the dry run
    reset()
    events = count_events(write, count_file, extra=extra)
    assert _state(out, is_new, fresh) == "new"
    seen: dict[str, int] = {}
    rng = random.Random(0)
    kills = [("event", n) for n in kill_points(events, spread * SCALE, tail)]
    kills += [("time", n) for n in range(random_kills * SCALE)]
    for how, n in kills:
        reset()
        if how == "event":
            status = run_child(write, n, count_file, extra=extra)
            assert was_killed(status), f"event {n} of {len(events)}: the child was not killed"
        else:
            run_and_kill_after(write, rng.uniform(0.0, 0.3))
        state = _state(out, is_new, fresh)
        seen[state] = seen.get(state, 0) + 1
        write()  # a re-run takes over the lock, cleans up and finishes
        assert _state(out, is_new, fresh) == "new", f"{how} {n}: re-run did not finish"
        assert _leftovers(out) == [], f"{how} {n}: left {_leftovers(out)}"
    print(f"{out.name}: {len(kills)} kills over {len(events)} steps: {seen}")
    return seen


def test_import_over_a_bundle_killed_anywhere(tmp_path: Path, tiny_llama_bundle: Path) -> None:
    out = tmp_path / "model.tllm"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tiny_llama_bundle, out)

    def write() -> None:
        tinyllm.import_model("tiny-qwen2", out, overwrite=True)

    seen = _trials(tmp_path, reset, write, lambda b: b.config.family == "qwen2", out)
    assert set(seen) <= {"old", "new"} and seen.get("old", 0) > 0 and seen.get("new", 0) > 0


def test_without_an_atomic_swap_a_kill_between_renames_is_recoverable(
    tmp_path: Path, tiny_llama_bundle: Path
) -> None:
    out = tmp_path / "model.tllm"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tiny_llama_bundle, out)

    def write() -> None:
        tinyllm.import_model("tiny-qwen2", out, overwrite=True)

    import tinyllm.bundle as bundle_module

    def no_swap(a: Path, b: Path) -> bool:
        return False

    original = bundle_module.exchange_dirs
    bundle_module.exchange_dirs = no_swap  # type: ignore[assignment]
    try:
        seen = _trials(
            tmp_path, reset, write, lambda b: b.config.family == "qwen2", out, random_kills=0
        )
    finally:
        bundle_module.exchange_dirs = original
    # Killed between "move the old one aside" and "move the new one in": the open names
    # where the old bundle is, and the next writer puts it back before writing.
    assert seen.get("kept", 0) >= 1 and set(seen) <= {"old", "new", "kept"}


def test_add_task_to_a_new_path_killed_anywhere(tmp_path: Path, exported: Path) -> None:
    out = tmp_path / "tasks.tllm"
    parent = tinyllm.open_bundle(exported)
    spec: TaskSpec = SUITE.task("sentiment")

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)

    def write() -> None:
        tinyllm.lineage.add_tasks(parent, out, [spec], overwrite=True)

    seen = _trials(
        tmp_path, reset, write, lambda b: "sentiment" in b.manifest.tasks, out, fresh=True
    )
    assert set(seen) <= {"absent", "new"} and seen.get("absent", 0) > 0


def test_serving_json_written_in_place_killed_anywhere(tmp_path: Path, exported: Path) -> None:
    from tinyllm.runtime.profilesweep import SweepPoint, apply_settings
    from tinyllm.runtime.servingdefaults import read_defaults

    out = tmp_path / "served.tllm"
    point = SweepPoint({"max_batch": 3}, 1.0, 2.0, 1.0, 1.0, 0)

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(exported, out)

    def write() -> None:
        apply_settings(Bundle.open(out), None, point, {"by": "test"})

    def is_new(bundle: Bundle) -> bool:
        engine = next(iter(bundle.manifest.engines.values()))
        return read_defaults(bundle.path / engine.path).max_batch == 3

    seen = _trials(tmp_path, reset, write, is_new, out, spread=6, tail=4, random_kills=2)
    assert set(seen) <= {"old", "new"} and seen.get("old", 0) > 0


def test_compress_over_a_bundle_killed_anywhere(tmp_path: Path, tiny_llama_bundle: Path) -> None:
    """GPTQ writes weights, calibration statistics and the manifest through the bundle
    writer: a kill leaves the float bundle that was there, or the whole int4 one."""
    import torch

    out = tmp_path / "int4.tllm"

    def reset() -> None:
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(tiny_llama_bundle, out)

    def write() -> None:
        # One torch thread: a forked child of a process whose OpenMP team has run would
        # wait for that team's threads, which fork did not copy.
        torch.set_num_threads(1)
        tinyllm.api.compress(
            tiny_llama_bundle,
            out,
            quant="int4-gptq",
            names=["sentiment"],
            calib_samples=4,
            overwrite=True,
            progress=False,
        )

    def is_new(bundle: Bundle) -> bool:
        return bundle.manifest.quantization is not None and bundle.manifest.stage == "compress"

    threads = torch.get_num_threads()
    try:
        seen = _trials(tmp_path, reset, write, is_new, out, spread=6, tail=6, random_kills=2)
    finally:
        torch.set_num_threads(threads)
    assert set(seen) <= {"old", "new"} and seen.get("old", 0) > 0 and seen.get("new", 0) > 0


class _Teacher:
    """Answers every input with its label; deterministic, so a re-run gives the same."""

    name = "fixed"

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        return [["positive" if "good" in text else "negative"] for text in inputs]


def test_labelling_journal_killed_anywhere(tmp_path: Path) -> None:
    from tinyllm.distill.labelling import label_task, read_journal
    from tinyllm.tasks import read_examples

    task = SUITE.task("sentiment")
    inputs = [f"{'good' if i % 3 else 'bad'} text {i} " + "é" * i for i in range(12)]
    out = tmp_path / "labels"
    journal = out / "sentiment.journal.jsonl"
    count_file = str(tmp_path / "events")

    def write() -> None:
        label_task(task, inputs, _Teacher(), out, k=1, batch_size=2, progress=False)

    write()  # warm the caches, so the children take the same steps as the dry run
    shutil.rmtree(out)
    events = count_events(write, count_file)
    expected = read_journal(journal)
    assert [r["input"] for r in expected] == inputs
    rng = random.Random(1)
    points = [("event", n) for n in kill_points(events, 30 * SCALE, 0)]
    points += [("time", n) for n in range(4 * SCALE)]
    prefixes = set()
    for how, n in points:
        shutil.rmtree(out, ignore_errors=True)
        if how == "event":
            assert was_killed(run_child(write, n, count_file))
        else:
            run_and_kill_after(write, rng.uniform(0.0, 0.05))
        done = read_journal(journal)  # a torn last record is dropped, never an error
        assert done == expected[: len(done)], f"{how} {n}: not a prefix of the full run"
        prefixes.add(len(done))
        write()  # resumes: each input labelled once, outputs rewritten whole
        assert read_journal(journal) == expected
        assert [e.input for e in read_examples(out / "sentiment.jsonl", "labels")] == [
            r["input"] for r in expected if r["output"] is not None
        ]
        assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    print(f"journal: {len(points)} kills over {len(events)} steps: {len(prefixes)} prefixes")
    assert len(prefixes) >= 4  # kills landed before, between and after the batches
