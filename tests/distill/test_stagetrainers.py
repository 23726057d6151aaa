"""The curriculum trains with the run's method: logit KD reaches the shared stages on both
backends and a dissimilar task's own LoRA, end to end from ``distill``; GRPO is refused
with what to do instead."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest
from colorsuite import curriculum_inputs

import tinyllm
import tinyllm.distill.multitask as multitask
from tinyllm.distill.curriculum import CurriculumConfig
from tinyllm.distill.multitask import run_curriculum
from tinyllm.distill.recipe import DistillOptions
from tinyllm.distill.sft import TrainConfig
from tinyllm.distill.trlrun import TrlOptions
from tinyllm.errors import ConfigError, TaskError

CONFIG = TrainConfig(steps=3, batch_size=4, lr=5e-3, warmup=1, rank=2, alpha=4, max_len=64)
# color (48 examples) high-resource, shade (24) low-resource; validation every 2 steps.
CURRICULUM = CurriculumConfig(min_train=40, patience=1, eval_every=2, embed_limit=4)
# The teacher is the student's own base model. A fresh LoRA adds exact zeros, so the
# student's distribution is the teacher's: the first KD loss (forward KL) is 0 (FIRST);
# its gradient is 0 up to rounding, which Adam scales to lr-sized steps, so later losses
# drift up to about 1e-3 in these few steps (KD_NEAR). SFT's loss on the same batches is
# the answers' cross-entropy under a random model, above 1: a stage that trained SFT
# while asked for KD fails both bounds at once.
FIRST, KD_NEAR = 1e-6, 1e-2


def curriculum(
    bundle: Path, suite_path: Path, backend: str, method: str, teacher: Any, **cfg: Any
) -> dict[str, list[float]]:
    """Per-task losses of one curriculum run (validation scores always improving)."""
    loaded, suite, selected, data = curriculum_inputs(bundle, suite_path)
    trl = TrlOptions(tensorboard=False) if backend == "trl" else None
    options = DistillOptions(train=CONFIG, backend=backend, trl=trl)
    config = dataclasses.replace(CURRICULUM, **cfg)
    _, results, _ = run_curriculum(
        loaded, suite, selected, data, options, lambda _: None, False, config,
        method=method, teacher=teacher,
    )  # fmt: skip
    return {name: r.losses for name, r in results.items()}


def test_kd_reaches_every_trainer_of_the_curriculum(
    tiny_llama_bundle: Path, color_suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = itertools.count()
    monkeypatch.setattr(multitask, "validation_score", lambda *a: float(next(counter)))
    teacher = tinyllm.load_torch_model(tiny_llama_bundle).model
    sft = curriculum(tiny_llama_bundle, color_suite, "own", "sft", None)
    assert min(min(v) for v in sft.values()) > 1.0  # what FIRST and KD_NEAR tell apart
    for backend in ("own", "trl"):
        kd = curriculum(tiny_llama_bundle, color_suite, backend, "kd", teacher)
        assert [len(v) for v in kd.values()] == [len(v) for v in sft.values()], backend
        assert kd["color"][0] < FIRST and max(max(v) for v in kd.values()) < KD_NEAR, (backend, kd)
    # min_similarity above 1: both tasks are "dissimilar" and train alone, each on the
    # single-task KD trainer.
    alone = curriculum(tiny_llama_bundle, color_suite, "own", "kd", teacher, min_similarity=1.5)
    assert [len(v) for v in alone.values()] == [CONFIG.steps, CONFIG.steps]
    assert max(v[0] for v in alone.values()) < FIRST, alone
    assert max(max(v) for v in alone.values()) < KD_NEAR, alone


def test_grpo_and_a_stray_teacher_are_refused(tiny_llama_bundle: Path, color_suite: Path) -> None:
    with pytest.raises(ConfigError, match="trains with method 'sft' or 'kd', not 'grpo'"):
        curriculum(tiny_llama_bundle, color_suite, "own", "grpo", None)
    teacher = object()
    with pytest.raises(ConfigError, match="a teacher model is for method 'kd', not 'sft'"):
        curriculum(tiny_llama_bundle, color_suite, "own", "sft", teacher)


def test_distill_with_kd_and_the_curriculum_trains_kd(
    tiny_llama_bundle: Path, color_suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyllm.distill.recipe as recipe

    # The teacher gives the logits; the data are the suite's own labels (a random tiny
    # teacher's answers would all be rejected by the verifier).
    real = recipe.student_and_data
    monkeypatch.setattr(
        recipe, "student_and_data", lambda suite, sel, _t, *rest: real(suite, sel, "oracle", *rest)
    )
    lines: list[str] = []
    report = tinyllm.api.distill(
        color_suite, teacher=f"bundle:{tiny_llama_bundle}", student=tiny_llama_bundle,
        out=tmp_path / "kd.tllm", method="kd", curriculum=True, quick=True, steps=2,
        eval_limit=1, progress=False, log=lines.append,
    )  # fmt: skip
    assert any("logit KD" in line for line in lines), lines
    assert report.method == "kd" and report.curriculum
    with pytest.raises(TaskError, match=r"no training examples for \['color'\]"):
        run_curriculum(
            tinyllm.load_torch_model(tiny_llama_bundle), tinyllm.api.load_tasks(color_suite),
            tinyllm.api.load_tasks(color_suite).select(["color"]), {"color": []},
            DistillOptions(train=CONFIG), print, False,
        )  # fmt: skip
    assert sum(r.steps for r in report.rows) == 2
    assert all(r.loss_first < KD_NEAR for r in report.rows if r.steps), report.rows
