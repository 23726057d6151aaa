"""The curriculum on trl checkpoints its own state and resumes from it: a run interrupted in
stage 3, or after stage 2, resumes to the uninterrupted run's early stopping, losses and
snapshot adapters; a resume that loses the sampler's RNG state does not; a checkpoint that
is corrupt or of another run is refused with what is wrong."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from colorsuite import color_suite_at, curriculum_inputs, run_differences

import tinyllm.distill.curriculumstate as curriculumstate
import tinyllm.distill.multitask as multitask
from tinyllm.distill.curriculum import CurriculumConfig
from tinyllm.distill.multitask import run_curriculum
from tinyllm.distill.recipe import DistillOptions
from tinyllm.distill.sft import TrainConfig
from tinyllm.distill.trlrun import TrlOptions
from tinyllm.errors import CheckpointError

CONFIG = TrainConfig(steps=6, batch_size=4, lr=5e-3, warmup=2, rank=2, alpha=4, max_len=64)
# color (48 examples) is high-resource, shade (24) low-resource: stage 2 trains color for
# 6 steps, stage 3 both, validating every 2 steps; color peaks at step 2 and stops at 4.
CURRICULUM = CurriculumConfig(min_train=40, patience=1, eval_every=2, embed_limit=4)
SCORES = {"color": [0.2, 0.5, 0.4], "shade": [0.1, 0.2, 0.3, 0.4]}
# A resumed run repeats the uninterrupted run's operations on the same numbers: the
# adapter and optimizer state come back from the checkpoint bit for bit, the batches and
# the validation decisions are the same, and nothing draws torch random numbers (no
# dropout). So the losses and adapters must be equal exactly, not merely close.
TOL = 0.0


class Interrupted(Exception):
    """Stands for a crash or a kill in the middle of a run."""


class Scripted:
    """Validation scores by (task, call number); ``start``: calls already made before a
    resume; ``interrupt``: the (task, call number) that crashes the run instead."""

    def __init__(self, start: dict[str, int] | None = None, interrupt: Any = None) -> None:
        self.calls = dict(start or {})
        self.interrupt = interrupt

    def __call__(self, model: Any, tokenizer: Any, task: Any, examples: Any) -> float:
        i = self.calls.get(task.name, 0)
        self.calls[task.name] = i + 1
        if (task.name, i) == self.interrupt:
            raise Interrupted(f"{task.name} validation {i}")
        return SCORES[task.name][i]


@dataclasses.dataclass
class Run:
    losses: dict[str, list[float]]
    report: list[dict[str, Any]]
    adapters: dict[str, Any]


def run(
    bundle: Path,
    suite_path: Path,
    run_dir: Path,
    scores: Scripted,
    monkeypatch: pytest.MonkeyPatch,
    *,
    resume: bool = False,
    seed: int = 0,
) -> Run:
    """One trl curriculum run checkpointing every 2 steps into ``run_dir``."""
    monkeypatch.setattr(multitask, "validation_score", scores)
    loaded, suite, selected, data = curriculum_inputs(bundle, suite_path)
    trl = TrlOptions(run_dir=str(run_dir), save_steps=2, resume=resume, tensorboard=False)
    train = dataclasses.replace(CONFIG, seed=seed)
    options = DistillOptions(train=train, backend="trl", trl=trl)
    adapters, results, report = run_curriculum(
        loaded, suite, selected, data, options, lambda _: None, False, CURRICULUM
    )
    return Run({n: r.losses for n, r in results.items()}, report, adapters)


def differences(a: Run, b: Run) -> list[str]:
    """What differs between two runs (exactly: TOL is 0)."""
    return run_differences(a, b, TOL)


def validations_done(checkpoint: Path) -> dict[str, int]:
    """How many validations of each task a stage-3 checkpoint's state records."""
    stops = json.loads((checkpoint / curriculumstate.STATE_FILE).read_text())["stops"]
    return {name: len(s["history"]) for name, s in stops.items()}


@pytest.fixture(scope="module")
def uninterrupted(tiny_llama_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The uninterrupted run (checkpoints in ``runs/whole``) and its suite, made once."""
    root = tmp_path_factory.mktemp("curriculum")
    suite = color_suite_at(root)
    with pytest.MonkeyPatch.context() as monkeypatch:
        done = run(tiny_llama_bundle, suite, root / "whole", Scripted(), monkeypatch)
    stages = {r["task"]: (r["best_step"], r["stopped_at"]) for r in done.report}
    assert stages == {"color": (2, 4), "shade": (6, None)}
    return done, suite, root / "whole"


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    uninterrupted: Any, tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, suite, _ = uninterrupted
    runs = tmp_path / "runs"
    # The crash comes at step 4's validation: stage 3's last checkpoint is step 2, with
    # both tasks still sampled, so steps 3 and 4 depend on the restored sampler RNG.
    with pytest.raises(Interrupted):
        run(tiny_llama_bundle, suite, runs, Scripted(interrupt=("color", 2)), monkeypatch)
    stage3 = runs / "curriculum-stage3"
    assert sorted(p.name for p in stage3.glob("checkpoint-*")) == ["checkpoint-2"]
    shutil.copytree(runs, tmp_path / "lost-rng")
    # Interrupted after stage 2 (before stage 3 checkpointed): the same folders without
    # stage 3's.
    shutil.copytree(runs, tmp_path / "after-stage-2", ignore=shutil.ignore_patterns("*stage3"))
    done = validations_done(stage3 / "checkpoint-2")
    assert done == {"color": 2, "shade": 2}
    resumed = run(tiny_llama_bundle, suite, runs, Scripted(done), monkeypatch, resume=True)
    assert differences(whole, resumed) == []
    after2 = tmp_path / "after-stage-2"
    resumed = run(tiny_llama_bundle, suite, after2, Scripted(), monkeypatch, resume=True)
    assert differences(whole, resumed) == []

    # The same resume without the sampler's RNG state draws other tasks at steps 3-4.
    def active_only(sampler: Any, state: Any) -> None:
        sampler.active = set(state["active"])

    monkeypatch.setattr(multitask, "restore_sampler", active_only)
    lost = tmp_path / "lost-rng"
    broken = run(tiny_llama_bundle, suite, lost, Scripted(done), monkeypatch, resume=True)
    assert any("losses" in f for f in differences(whole, broken))


def test_a_corrupt_or_foreign_checkpoint_is_refused(
    uninterrupted: Any, tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole, suite, runs = uninterrupted
    # Another seed is another run: refused before any training.
    with pytest.raises(CheckpointError, match=r"another run \(train.seed: 0 in the checkpoint"):
        run(tiny_llama_bundle, suite, runs, Scripted(), monkeypatch, resume=True, seed=1)
    checkpoint = runs / "curriculum-stage3" / "checkpoint-6"
    payload = json.loads((checkpoint / curriculumstate.STATE_FILE).read_text())
    run_id, train = payload["run"], CONFIG
    state = curriculumstate.load_state(checkpoint, "stage 3", run_id, train)
    assert state.step == 6 and set(state.snapshots) == {"color", "shade"}
    for name, tensor in state.snapshots["color"].tensors.items():
        # the snapshot saved is the adapter the run returned for color (its step-2 best)
        np.testing.assert_array_equal(tensor, whole.adapters["color"].tensors[name])

    def broken(change: Any) -> Path:
        copy = tmp_path / f"broken-{len(list(tmp_path.glob('broken-*')))}" / checkpoint.name
        shutil.copytree(checkpoint, copy)
        change(copy)
        return copy

    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))

    cases = {
        "adapter_model.safetensors changed": lambda c: flip(c / "adapter_model.safetensors"),
        "optimizer.pt changed": lambda c: flip(c / "optimizer.pt"),
        "curriculum-snapshots.safetensors changed": lambda c: flip(
            c / curriculumstate.SNAPSHOT_FILE
        ),
        "curriculum.json is unreadable": lambda c: (c / "curriculum.json").write_text("{"),
        "has no curriculum.json": lambda c: (c / "curriculum.json").unlink(),
    }
    for message, change in cases.items():
        with pytest.raises(CheckpointError, match=message):
            curriculumstate.load_state(broken(change), "stage 3", run_id, train)
    with pytest.raises(CheckpointError, match="state is of stage 3 step 6, but the folder"):
        curriculumstate.load_state(checkpoint, "stage 2", run_id, train)
    other = {**run_id, "curriculum": {**run_id["curriculum"], "patience": 2}}
    with pytest.raises(CheckpointError, match=r"curriculum\.patience: 1 in the checkpoint, 2 now"):
        curriculumstate.load_state(checkpoint, "stage 3", other, train)
