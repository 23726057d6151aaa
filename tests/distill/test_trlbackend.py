"""The trl backend: same losses as our loop, determinism, checkpoints and resume, gradient
accumulation, TensorBoard logs, KD with our loss, and the same bundle layout."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trl as _trl  # noqa: F401  (the dev extra installs trl: a broken install fails)
from callsuite import sums_targets, sums_task

import tinyllm
from tinyllm.distill import trlbackend
from tinyllm.distill.kd import KDConfig, train_kd_lora
from tinyllm.distill.sft import TrainConfig, encode, train_lora
from tinyllm.distill.trlbackend import answer_metrics, train_lora_trl, train_trl
from tinyllm.distill.trlrun import (
    TrlOptions,
    checkpoint_losses,
    latest_checkpoint,
    micro_batch,
    mixed_precision,
)
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec
from tinyllm.torchkit import IGNORE_INDEX

CONFIG = TrainConfig(steps=6, batch_size=4, lr=5e-3, warmup=2, rank=2, alpha=4, max_len=64)
TOL = 1e-4  # fp32; the two backends sum the same terms in another order


def fresh(bundle: Path) -> Any:
    return tinyllm.load_torch_model(bundle)


def test_trl_sft_gives_our_loops_losses_and_adapter(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    data = examples(24)
    own = fresh(tiny_llama_bundle)
    own_adapter, own_result = train_lora(own.model, own.tokenizer, color_task, data, CONFIG)
    trl = fresh(tiny_llama_bundle)
    trl_adapter, trl_result = train_lora_trl(
        trl.model, trl.tokenizer, color_task, data, CONFIG, TrlOptions(tensorboard=False)
    )
    assert len(trl_result.losses) == CONFIG.steps
    np.testing.assert_allclose(trl_result.losses, own_result.losses, rtol=0, atol=TOL)
    assert trl_result.last < trl_result.first  # it learns
    assert trl_adapter.tensors.keys() == own_adapter.tensors.keys()
    for name, value in own_adapter.tensors.items():
        np.testing.assert_allclose(trl_adapter.tensors[name], value, atol=1e-4, err_msg=name)
    trl_adapter.check(trl.config, "trl adapter")
    # The base model is untouched and unpatched (trl's fused LM head removed).
    assert "forward" not in vars(trl.model)
    base = fresh(tiny_llama_bundle).model.state_dict()
    for name, value in trl.model.state_dict().items():
        assert np.array_equal(value.numpy(), base[name].numpy()), name


def test_the_lm_head_runs_on_the_answer_positions_only(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    # trl's own loss scores every position of every row on a CPU (its fused head is
    # compact only under Triton); ours projects the answer positions only, as our loop.
    loaded = fresh(tiny_llama_bundle)
    data = examples(16)
    seen: list[tuple[int, ...]] = []
    hook = loaded.model.lm_head.register_forward_hook(
        lambda _m, args, _out: seen.append(tuple(args[0].shape))
    )
    config = TrainConfig(**{**CONFIG.__dict__, "steps": 3})
    train_lora_trl(
        loaded.model, loaded.tokenizer, color_task, data, config, TrlOptions(tensorboard=False)
    )
    hook.remove()
    rows = encode(loaded.tokenizer, color_task, data, CONFIG.max_len)
    answer = max(sum(label != -100 for label in r.labels) for r in rows)
    prompt = min(sum(label == -100 for label in r.labels) for r in rows)
    assert len(seen) == config.steps  # one projection a step
    for batch, positions, _hidden in seen:
        assert batch == CONFIG.batch_size
        assert positions <= answer + 1 < prompt  # the answers (and the last prompt token)


def test_answer_metrics_are_trls_entropy_and_first_maximum_accuracy() -> None:
    import torch

    logits = torch.tensor([[[2.0, 0.0, 2.0], [0.0, 1.0, 0.0], [5.0, 0.0, 0.0]]])  # [1, 3, 3]
    targets = torch.tensor([[2, 1, -100]])  # a tie lost to an earlier token; a hit; masked
    count, entropy, correct = answer_metrics(logits, targets).tolist()
    p = torch.softmax(logits[0, :2], -1)
    assert count == 2 and correct == 1
    assert entropy == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)
    assert answer_metrics(logits, torch.tensor([[0, 1, -100]]))[2] == 2  # the first maximum


def test_same_seed_same_losses_another_seed_others(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    runs = []
    for seed in (0, 0, 1):
        loaded = fresh(tiny_llama_bundle)
        config = TrainConfig(**{**CONFIG.__dict__, "steps": 3, "seed": seed})
        _, result = train_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(16), config,
            TrlOptions(tensorboard=False),
        )  # fmt: skip
        runs.append(result.losses)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_gradient_accumulation_keeps_the_global_batch(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    losses = []
    for accum in (1, 2, 4):
        loaded = fresh(tiny_llama_bundle)
        _, result = train_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(16), CONFIG,
            TrlOptions(grad_accum=accum, tensorboard=False),
        )  # fmt: skip
        losses.append(result.losses)
    np.testing.assert_allclose(losses[1], losses[0], atol=TOL)
    np.testing.assert_allclose(losses[2], losses[0], atol=TOL)
    with pytest.raises(ConfigError, match="multiple of grad_accum x processes"):
        micro_batch(CONFIG, TrlOptions(grad_accum=3), 1)


def test_checkpoints_resume_to_the_uninterrupted_losses_and_tensorboard_logs(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any, tmp_path: Path
) -> None:
    whole = fresh(tiny_llama_bundle)
    _, full = train_lora_trl(
        whole.model, whole.tokenizer, color_task, examples(16), CONFIG,
        TrlOptions(run_dir=str(tmp_path / "whole")),
    )  # fmt: skip
    logs = list((tmp_path / "whole" / "color" / "tensorboard").glob("events.out.tfevents.*"))
    assert logs and logs[0].stat().st_size > 0
    # A run stopped after 4 of 6 steps, with a checkpoint every 2, then resumed.
    run = tmp_path / "split"
    first = fresh(tiny_llama_bundle)
    short = TrainConfig(**{**CONFIG.__dict__, "steps": 4})
    train_lora_trl(
        first.model, first.tokenizer, color_task, examples(16), short,
        TrlOptions(run_dir=str(run), save_steps=2, tensorboard=False),
    )  # fmt: skip
    checkpoint = latest_checkpoint(str(run / "color"))
    assert checkpoint is not None and checkpoint.endswith("checkpoint-4")
    np.testing.assert_allclose(checkpoint_losses(checkpoint), full.losses[:4], atol=TOL)
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    steps = [e for e in state["log_history"] if "loss" in e]
    assert len(steps) == 4  # trl's metrics, from our loss's logits, every step
    assert all(0 <= e["mean_token_accuracy"] <= 1 and e["entropy"] > 0 for e in steps)
    again = fresh(tiny_llama_bundle)
    adapter, resumed = train_lora_trl(
        again.model, again.tokenizer, color_task, examples(16), CONFIG,
        TrlOptions(run_dir=str(run), save_steps=2, resume=True, tensorboard=False),
    )  # fmt: skip
    np.testing.assert_allclose(resumed.losses, full.losses, atol=TOL)
    adapter.check(again.config, "resumed adapter")


def test_trl_kd_uses_our_loss_and_matches_our_kd_loop(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any
) -> None:
    teacher = fresh(tiny_llama_bundle).model
    kd = KDConfig(divergence="jsd", beta=0.3, ce_weight=0.5)
    own = fresh(tiny_llama_bundle)
    _, own_result = train_kd_lora(
        own.model, teacher, own.tokenizer, color_task, examples(16), CONFIG, kd
    )
    mine = fresh(tiny_llama_bundle)
    _, trl_result = train_lora_trl(
        mine.model, mine.tokenizer, color_task, examples(16), CONFIG,
        TrlOptions(tensorboard=False), teacher=teacher, kd=kd,
    )  # fmt: skip
    np.testing.assert_allclose(trl_result.losses, own_result.losses, atol=TOL)
    # The student starts as the teacher: the divergence part starts at 0, CE does not.
    assert trl_result.losses[0] > 0


def test_trl_kd_on_calls_trains_the_written_positions_as_our_loop_does(
    tiny_llama_bundle: Path,
) -> None:
    """Both backends take their rows from sft.encode, so trl's KD on a call target skips
    the tool result the runtime inserts, as ours does: the same losses."""
    teacher = fresh(tiny_llama_bundle).model
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(1.1)
    task, targets = sums_task("context"), sums_targets("context", 8)
    config = dataclasses.replace(CONFIG, steps=3, max_len=160)
    kd = KDConfig(divergence="forward")
    own = fresh(tiny_llama_bundle)
    _, own_result = train_kd_lora(own.model, teacher, own.tokenizer, task, targets, config, kd)
    mine = fresh(tiny_llama_bundle)
    _, trl_result = train_lora_trl(
        mine.model, mine.tokenizer, task, targets, config, TrlOptions(tensorboard=False),
        teacher=teacher, kd=kd,
    )  # fmt: skip
    np.testing.assert_allclose(trl_result.losses, own_result.losses, atol=TOL)
    assert own_result.losses[0] > 1e-3  # a different teacher: the divergence is not 0


def test_bad_trl_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="need a run_dir"):
        TrlOptions(save_steps=5)
    with pytest.raises(ConfigError, match="need a run_dir"):
        TrlOptions(resume=True)
    with pytest.raises(ConfigError, match="grad_accum"):
        TrlOptions(grad_accum=0)
    with pytest.raises(ConfigError, match="unknown precision"):
        TrlOptions(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        mixed_precision("fp16")
    assert mixed_precision("auto") == (False, False)  # CPU: fp32


def test_trl_on_policy_kd_trains_our_loops_steps_on_the_students_samples(
    tiny_llama_bundle: Path, color_task: TaskSpec, examples: Any, monkeypatch: Any
) -> None:
    """``KDConfig.on_policy`` on trl: the steps our loop picks (draw ``s`` of the seed's
    ``random.Random`` below the share) train on the student's own answers to the batch's
    prompts; the steps before the first of them are the off-policy run's."""
    teacher = fresh(tiny_llama_bundle).model
    config = replace(CONFIG, steps=4)
    draws = random.Random(config.seed)
    picked = [s for s in range(config.steps) if draws.random() < 0.5]
    assert picked[0] > 0 and len(picked) < config.steps  # some steps each way
    honest, calls = trlbackend.sampled_batch, []

    def recorded(trainer: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        out = honest(trainer, inputs)
        calls.append((trainer.state.global_step, inputs, out))
        return out

    monkeypatch.setattr(trlbackend, "sampled_batch", recorded)

    def kd(share: float) -> KDConfig:  # CE on the answers: the student starts as the teacher
        return KDConfig(on_policy=share, ce_weight=1.0)

    runs = {}
    for share in (0.5, 0.0):
        loaded = fresh(tiny_llama_bundle)
        _, runs[share] = train_lora_trl(
            loaded.model, loaded.tokenizer, color_task, examples(16), config,
            TrlOptions(tensorboard=False), teacher=teacher, kd=kd(share),
        )  # fmt: skip
    assert [step for step, _, _ in calls] == picked  # and none in the off-policy run
    first = picked[0]
    on, off = runs[0.5].losses, runs[0.0].losses
    np.testing.assert_allclose(on[:first], off[:first], atol=TOL)
    assert abs(on[first] - off[first]) > 1e-3  # the samples, not the references
    limit = color_task.output.max_new_tokens
    for _, inputs, out in calls:
        for i in range(len(inputs["labels"])):
            ref, new = (rows_of(b, i) for b in (inputs, out))
            assert new[0] == ref[0]  # the same prompt
            assert 0 < len(new[1]) <= limit  # the student's answer, at most the task's length
        rows = range(len(out["labels"]))
        assert any(rows_of(out, i)[1] != rows_of(inputs, i)[1] for i in rows)


def rows_of(batch: dict[str, Any], i: int) -> tuple[list[int], list[int]]:
    """Row ``i`` of a left-padded batch: its prompt ids and its answer ids."""
    real = batch["attention_mask"][i] == 1
    answer = batch["labels"][i] != IGNORE_INDEX
    return batch["input_ids"][i][real & ~answer].tolist(), batch["input_ids"][i][answer].tolist()


def test_trl_on_policy_kd_on_calls_samples_the_students_calls(
    tiny_llama_bundle: Path, monkeypatch: Any
) -> None:
    """On a task with tools trl's on-policy steps sample calls (the call's length, not the
    answer's), as our loop's do (:func:`tinyllm.distill.calltargets.sampled_calls`)."""
    import tinyllm.distill.kd as kd_module

    seen: list[int] = []
    honest = kd_module.sampled_calls

    def recorded(model: Any, tokenizer: Any, task: TaskSpec, prompts: Any) -> Any:
        items = honest(model, tokenizer, task, prompts)
        seen.extend(len(i.input_ids) - len(p) for i, p in zip(items, prompts, strict=True))
        return items

    monkeypatch.setattr(kd_module, "sampled_calls", recorded)
    task = sums_task("answer")
    loaded = fresh(tiny_llama_bundle)
    _, result = train_lora_trl(
        loaded.model, loaded.tokenizer, task, sums_targets("answer", 8),
        replace(CONFIG, steps=2, max_len=160), TrlOptions(tensorboard=False),
        teacher=fresh(tiny_llama_bundle).model, kd=KDConfig(on_policy=1.0),
    )  # fmt: skip
    assert len(result.losses) == 2 and len(seen) == 2 * CONFIG.batch_size
    assert task.tools is not None and all(0 < n <= task.tools.max_call_tokens for n in seen)
    assert max(seen) > task.output.max_new_tokens  # the call's budget, not the answer's


def test_trl_on_policy_without_an_answer_length_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="answer_tokens"):
        kd = KDConfig(on_policy=0.5)
        train_trl(None, None, [], CONFIG, TrlOptions(), "x", teacher=object(), kd=kd)
