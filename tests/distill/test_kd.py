"""Logit KD: the student moves toward a teacher; on-policy batches; tokenizer checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import tinyllm
from tinyllm.distill.kd import KDConfig, check_same_tokenizer, load_teacher_model, train_kd_lora
from tinyllm.distill.sft import TrainConfig
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
