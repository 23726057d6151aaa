"""Logit KD: the student moves toward a teacher; on-policy batches; tokenizer checks; KD on
tool-call targets (the written positions only, on-policy calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from callsuite import sums_targets, sums_task

import tinyllm
from tinyllm.distill.kd import (
    KDConfig,
    check_same_tokenizer,
    kd_loss_fn,
    load_teacher_model,
    train_kd_lora,
)
from tinyllm.distill.losses import token_divergence
from tinyllm.distill.sft import Batch, TrainConfig, collate, encode, prompt_text
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec

CONFIG = TrainConfig(steps=12, batch_size=8, lr=1e-2, warmup=1, rank=4, alpha=8, max_len=64)


@pytest.fixture()
def teacher(tiny_llama_bundle: Path) -> Any:
    """The tiny model with perturbed weights: same tokenizer, different distribution."""
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in loaded.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return loaded.model


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_kd_lowers_the_divergence_to_the_teacher(
    tiny_model: Any, teacher: Any, color_task: TaskSpec, examples: Any, divergence: str
) -> None:
    kd = KDConfig(divergence=divergence)  # type: ignore[arg-type]
    adapter, result = train_kd_lora(
        tiny_model.model, teacher, tiny_model.tokenizer, color_task, examples(64), CONFIG, kd
    )
    assert result.last < 0.8 * result.first, result.losses
    adapter.check(tiny_model.config, "kd adapter")


def test_on_policy_kd_runs_on_student_samples_and_is_deterministic(
    tiny_llama_bundle: Path, teacher: Any, color_task: TaskSpec, examples: Any
) -> None:
    config = TrainConfig(steps=4, batch_size=4, lr=1e-2, warmup=1, rank=2, max_len=64)
    runs = []
    for _ in range(2):
        loaded = tinyllm.load_torch_model(tiny_llama_bundle)
        _, result = train_kd_lora(
            loaded.model, teacher, loaded.tokenizer, color_task, examples(16), config,
            KDConfig(divergence="jsd", on_policy=1.0),
        )  # fmt: skip
        runs.append(result.losses)
    assert runs[0] == runs[1]
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    _, off = train_kd_lora(
        loaded.model, teacher, loaded.tokenizer, color_task, examples(16), config,
        KDConfig(divergence="jsd", on_policy=0.0),
    )  # fmt: skip
    assert off.losses != runs[0]  # on-policy batches are the student's samples, not references


def test_tokenizer_mismatch_is_an_error_or_a_fallback(tiny_llama_bundle: Path) -> None:
    student = tinyllm.load_torch_model(tiny_llama_bundle).tokenizer
    other = tinyllm.load_torch_model(tiny_llama_bundle).tokenizer
    other.add_tokens(["<not-in-the-student>"])
    with pytest.raises(ConfigError, match="vocabulary differs"):
        check_same_tokenizer(student, other)
    lines: list[str] = []
    assert load_teacher_model("openai:gpt@http://x", student, lines.append) is None
    assert "sequence-level KD" in lines[-1]
    model = load_teacher_model(f"bundle:{tiny_llama_bundle}", student, lines.append)
    assert model is not None and "logit KD" in lines[-1]


def test_bad_kd_config() -> None:
    with pytest.raises(ConfigError, match="divergence"):
        KDConfig(divergence="l2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_policy"):
        KDConfig(on_policy=1.5)


def _call_batch(tok: Any, task: TaskSpec, targets: list[Any]) -> Batch:
    return collate(encode(tok, task, targets, max_len=256), tok.pad_token_id or 0, task.name)


def _written_positions(tok: Any, task: TaskSpec, ex: Any) -> tuple[list[int], list[int]]:
    """The positions of one unpadded call sequence whose tokens the model writes (the call,
    the answer and eos), and those of the result the runtime inserts; built from the
    trace's parts, not from the labels under test."""

    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    p = n(prompt_text(tok, task, ex.input))
    call = n(ex.output.split("\n", 1)[0])
    result = n(f"\nResult: {ex.meta['tool_call']['result']}\n")
    answer = n(ex.meta["answer"] + tok.eos_token)
    written = list(range(p, p + call)) + list(range(p + call + result, p + call + result + answer))
    return written, list(range(p + call, p + call + result))


def test_kd_on_calls_scores_exactly_the_call_and_answer_positions(
    tiny_model: Any, teacher: Any
) -> None:
    tok, student = tiny_model.tokenizer, tiny_model.model
    task, targets = sums_task("context"), sums_targets("context", 3)
    batch = _call_batch(tok, task, targets)
    loss = kd_loss_fn(teacher, tok, task, KDConfig(), 0)(student, batch).detach()
    per_example = []
    for ex in targets:  # one unpadded sequence at a time, every position scored
        (enc,) = encode(tok, task, [ex], max_len=256)
        ids = torch.tensor([enc.input_ids])
        with torch.no_grad():
            kl = token_divergence(student(ids).logits[0, :-1], teacher(ids).logits[0, :-1])
        written, result = _written_positions(tok, task, ex)
        per_example.append((kl, written, result, len(enc.input_ids)))

    def mean_over(pick: Any) -> float:
        values = [kl[j - 1] for kl, w, r, t in per_example for j in pick(w, r, t)]
        return float(torch.stack(values).mean())

    assert float(loss) == pytest.approx(mean_over(lambda w, r, t: w), abs=1e-6)
    # Counting the result span or the prompt moves the mean 50x past that tolerance.
    with_result = mean_over(lambda w, r, t: sorted(w + r))
    with_prompt = mean_over(lambda w, r, t: range(1, t))
    assert abs(with_result - float(loss)) > 5e-5 and abs(with_prompt - float(loss)) > 5e-5


def test_kd_on_calls_from_the_student_itself_is_zero(
    tiny_llama_bundle: Path, tiny_model: Any, teacher: Any
) -> None:
    tok, task = tiny_model.tokenizer, sums_task("context")
    batch = _call_batch(tok, task, sums_targets("context", 4))
    same = tinyllm.load_torch_model(tiny_llama_bundle).model
    zero = kd_loss_fn(same, tok, task, KDConfig(), 0)(tiny_model.model, batch)
    assert float(zero) < 1e-6
    assert float(kd_loss_fn(teacher, tok, task, KDConfig(), 0)(tiny_model.model, batch)) > 1e-3


def test_on_policy_kd_on_calls_samples_the_students_calls(
    tiny_llama_bundle: Path, teacher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyllm.distill.kd as kd_module

    seen: list[tuple[int, int]] = []
    real = kd_module.sampled_calls

    def spy(model, tokenizer, task, prompts):  # type: ignore[no-untyped-def]
        items = real(model, tokenizer, task, prompts)
        seen.extend((len(p), len(i.input_ids)) for p, i in zip(prompts, items, strict=True))
        return items

    monkeypatch.setattr(kd_module, "sampled_calls", spy)
    config = TrainConfig(steps=2, batch_size=2, lr=1e-2, warmup=1, rank=2, max_len=160)
    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    _, result = train_kd_lora(
        loaded.model, teacher, loaded.tokenizer, sums_task("context"), sums_targets("context", 4),
        config, KDConfig(on_policy=1.0),
    )  # fmt: skip
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    assert len(seen) == 4 and all(0 < total - p <= 48 + 8 + 16 for p, total in seen)
