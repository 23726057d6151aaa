"""KD losses against hand computations on tiny distributions."""

from __future__ import annotations

import math

import pytest
import torch

from tinyllm.distill.losses import kd_loss, token_divergence
from tinyllm.errors import ConfigError


def kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def probs(logits: list[float]) -> list[float]:
    z = sum(math.exp(x) for x in logits)
    return [math.exp(x) / z for x in logits]


S, T = [0.5, -1.0, 2.0], [1.5, 0.0, -0.5]


@pytest.mark.parametrize("divergence", ["forward", "reverse", "jsd"])
def test_token_divergence_matches_hand_computation(divergence: str) -> None:
    p_s, p_t = probs(S), probs(T)
    if divergence == "forward":
        want = kl(p_t, p_s)
    elif divergence == "reverse":
        want = kl(p_s, p_t)
    else:
        beta = 0.3
        m = [beta * a + (1 - beta) * b for a, b in zip(p_t, p_s, strict=True)]
        want = beta * kl(p_t, m) + (1 - beta) * kl(p_s, m)
    got = token_divergence(torch.tensor(S), torch.tensor(T), divergence, beta=0.3)  # type: ignore[arg-type]
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_temperature_scales_logits_and_loss() -> None:
    t = 2.0
    want = kl(probs([x / t for x in T]), probs([x / t for x in S])) * t * t
    got = token_divergence(torch.tensor(S), torch.tensor(T), temperature=t)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_kd_loss_averages_only_unmasked_tokens() -> None:
    student = torch.tensor([[S, S, T]])  # [1, 3, 3]
    teacher = torch.tensor([[T, S, T]])
    labels = torch.tensor([[1, -100, 2]])
    # Token 0 differs, token 1 is masked, token 2 is identical (0): mean over 2 tokens.
    want = kl(probs(T), probs(S)) / 2
    assert kd_loss(student, teacher, labels).item() == pytest.approx(want, rel=1e-5)
    student.requires_grad_(True)
    masked = kd_loss(student, teacher, torch.full((1, 3), -100))
    assert masked.item() == 0.0
    masked.backward()  # no token: 0 on the graph, so a training step still runs
    assert student.grad is not None and not student.grad.any()


def test_identical_logits_give_zero_and_gradients_flow() -> None:
    student = torch.randn(2, 4, 7, requires_grad=True)
    teacher = student.detach().clone()
    for divergence in ("forward", "reverse", "jsd"):
        assert kd_loss(student, teacher, divergence=divergence).item() == pytest.approx(0, abs=1e-6)  # type: ignore[arg-type]
    loss = kd_loss(student, torch.randn(2, 4, 7))
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="same tokenizer"):
        kd_loss(torch.zeros(1, 2, 5), torch.zeros(1, 2, 6))
    with pytest.raises(ConfigError, match="unknown divergence"):
        kd_loss(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5), divergence="kl")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="beta"):
        kd_loss(torch.zeros(1, 2, 5), torch.zeros(1, 2, 5), divergence="jsd", beta=1.0)
