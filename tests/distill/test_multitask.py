"""The curriculum on trl: the same stages, per-task early stopping, snapshots and losses as
on our loop for a seed, and the comparison catches a run that stops elsewhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import trl as _trl  # noqa: F401  (the dev extra installs trl: a broken install fails)
from colorsuite import curriculum_inputs, run_differences

import tinyllm
import tinyllm.distill.multitask as multitask
from tinyllm.distill.curriculum import CurriculumConfig, MixtureSampler
from tinyllm.distill.multitask import run_curriculum
from tinyllm.distill.recipe import DistillOptions
from tinyllm.distill.sft import TrainConfig
from tinyllm.distill.trlrun import TrlOptions
from tinyllm.errors import ConfigError

CONFIG = TrainConfig(steps=6, batch_size=4, lr=5e-3, warmup=2, rank=2, alpha=4, max_len=64)
TOL = 1e-4  # fp32 losses and adapters; the backends sum the same terms in another order
# color (48 examples) is high-resource, shade (24) low-resource: stage 2 trains color,
# stage 3 both, validating every 2 steps; color peaks at step 2 and stops at step 4.
CURRICULUM = CurriculumConfig(min_train=40, patience=1, eval_every=2, embed_limit=4)
SCORES = {"color": [0.2, 0.5, 0.4], "shade": [0.1, 0.2, 0.3, 0.4]}


@dataclasses.dataclass
class Run:
    losses: dict[str, list[float]]
    report: list[dict[str, Any]]
    adapters: dict[str, Any]
    log: list[str]


def run(
    bundle: Path, suite_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch, **cfg: Any
) -> Run:
    """One curriculum run with scripted validation scores (per task, in call order)."""
    calls: dict[str, int] = {}

    def scripted(model: Any, tokenizer: Any, task: Any, examples: Any) -> float:
        i = calls[task.name] = calls.get(task.name, -1) + 1
        return SCORES[task.name][i]

    monkeypatch.setattr(multitask, "validation_score", scripted)
    loaded, suite, selected, data = curriculum_inputs(bundle, suite_path)
    trl = TrlOptions(tensorboard=False) if backend == "trl" else None
    options = DistillOptions(train=CONFIG, backend=backend, trl=trl)
    log: list[str] = []
    config = dataclasses.replace(CURRICULUM, **cfg)
    adapters, results, report = run_curriculum(
        loaded, suite, selected, data, options, log.append, False, config
    )
    losses = {name: r.losses for name, r in results.items()}
    return Run(losses, report, adapters, [line for line in log if "stage 3" in line])


def differences(a: Run, b: Run) -> list[str]:
    """What differs between two curriculum runs beyond the tolerance: decisions, early-stop
    points, per-task losses and the snapshot adapters, and the stage-3 log lines."""
    found = run_differences(a, b, TOL)
    if a.log != b.log:
        found.append(f"stops: {a.log} != {b.log}")
    return found


def test_trl_curriculum_stops_snapshots_and_trains_as_our_loop(
    tiny_llama_bundle: Path, color_suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = run(tiny_llama_bundle, color_suite, "own", monkeypatch)
    stages = {r["task"]: (r["stage"], r["best_step"], r["stopped_at"]) for r in own.report}
    assert stages == {"color": ("high-resource", 2, 4), "shade": ("low-resource", 6, None)}
    # Stage 2: 6 color steps; stage 3: 6 steps, color drawn only before its stop at step 4.
    assert len(own.losses["color"]) + len(own.losses["shade"]) == 12
    # The seed makes the stop visible in the data: a sampler that still held color would
    # have drawn it for step 5, so a batch drawn before the stop would change the losses.
    stale = MixtureSampler({"color": 48, "shade": 24}, CURRICULUM.temperature, CONFIG.seed + 1)
    assert [stale.draw() for _ in range(5)][-1] == "color"
    trl = run(tiny_llama_bundle, color_suite, "trl", monkeypatch)
    assert differences(own, trl) == []
    assert own.adapters["color"] is not own.adapters["shade"]  # each task's best snapshot


def test_the_comparison_catches_a_run_that_stops_elsewhere(
    tiny_llama_bundle: Path, color_suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = run(tiny_llama_bundle, color_suite, "own", monkeypatch)
    later = run(tiny_llama_bundle, color_suite, "trl", monkeypatch, eval_every=3)
    found = differences(own, later)
    assert any(f.startswith("decisions") for f in found), found
    assert any(f.startswith("color losses") for f in found), found


def test_curriculum_on_trl_end_to_end_and_its_refusals(
    tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path
) -> None:
    """``distill(curriculum=True, backend="trl")`` writes a bundle, validating with the real
    metric during trl's run; GRPO is refused for the curriculum, before any work."""
    common = {"student": tiny_llama_bundle, "quick": True, "steps": 4, "eval_limit": 2}
    reports = {}
    for backend in ("own", "trl"):
        reports[backend] = tinyllm.api.distill(
            color_suite, out=tmp_path / f"{backend}.tllm", curriculum=True, backend=backend,
            progress=False, log=lambda _: None, **common,
        )  # fmt: skip
    assert reports["trl"].decisions == reports["own"].decisions
    for own_row, trl_row in zip(reports["own"].rows, reports["trl"].rows, strict=True):
        assert (trl_row.task, trl_row.steps) == (own_row.task, own_row.steps)
        assert trl_row.loss_first == pytest.approx(own_row.loss_first, abs=TOL)
    assert set(tinyllm.open_bundle(tmp_path / "trl.tllm").manifest.adapters) == {"color", "shade"}
    with pytest.raises(ConfigError, match="for 'grpo' train one LoRA per task"):
        tinyllm.api.distill(
            color_suite, out=tmp_path / "x.tllm", curriculum=True, backend="trl",
            method="grpo", progress=False, **common,
        )  # fmt: skip
    assert not (tmp_path / "x.tllm").exists()
