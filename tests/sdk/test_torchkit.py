"""The shared torch toolkit: the one training loop and the HF generation helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tinyllm.errors import ConfigError
from tinyllm.torchkit import (
    LoopSettings,
    generate_text,
    sample_continuations,
    train_loop,
)


def toy() -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    data = [(torch.randn(4, 6), torch.randint(0, 3, (4,))) for _ in range(5)]
    return model, data


def cycle(data: list[Any]) -> Iterator[Any]:
    while True:
        yield from data


def ce(model: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def reference_losses(settings: LoopSettings) -> list[float]:
    """AdamW, linear warmup, clipping, written out by hand (the loop SFT and healing had)."""
    model, data = toy()
    torch.manual_seed(settings.seed)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    losses = []
    batches = cycle(data)
    for step in range(settings.steps):
        for group in opt.param_groups:
            group["lr"] = settings.lr * min(1.0, (step + 1) / max(1, settings.warmup))
        loss = ce(model, next(batches))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        opt.step()
        losses.append(float(loss.item()))
    return losses


SETTINGS = LoopSettings(steps=8, lr=0.05, weight_decay=0.1, warmup=4, grad_clip=0.5, seed=1)


def test_the_loop_is_adamw_with_warmup_and_clipping() -> None:
    model, data = toy()
    result = train_loop(model, cycle(data), ce, SETTINGS)
    assert result.losses == reference_losses(SETTINGS)
    assert not model.training
    # The comparison can fail: another warmup or clip gives other losses.
    assert result.losses != reference_losses(LoopSettings(8, 0.05, 0.1, 1, 0.5, 1))
    assert result.losses != reference_losses(LoopSettings(8, 0.05, 0.1, 4, 100.0, 1))


def test_the_loop_trains_only_what_requires_grad_and_stops_when_asked() -> None:
    model, data = toy()
    frozen = model[0].weight.detach().clone()
    model[0].weight.requires_grad_(False)
    seen: list[int] = []
    result = train_loop(
        model, cycle(data), ce, SETTINGS, on_step=lambda step, loss: seen.append(step) or step == 3
    )
    assert seen == [1, 2, 3] and len(result.losses) == 3
    assert torch.equal(model[0].weight, frozen)
    model.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        train_loop(model, cycle(data), ce, SETTINGS)


class ScriptedModel(torch.nn.Module):
    """Answers generate() with fixed continuations; records what it was asked."""

    def __init__(self, continuations: list[list[int]]) -> None:
        super().__init__()
        self.continuations = continuations
        self.calls: list[dict[str, Any]] = []

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.calls.append({"input_ids": input_ids, "training": self.training, **kwargs})
        return torch.cat([input_ids, torch.tensor(self.continuations)], dim=1)


class Tok:
    pad_token_id = None
    eos_token_id = 2


def test_sample_continuations_cut_at_eos_and_restore_training_mode() -> None:
    model = ScriptedModel([[5, 2, 0, 0], [6, 7, 8, 9]])
    model.train()
    answers = sample_continuations(model, Tok(), [[1, 4, 4], [1]], 4, temperature=0.7)
    assert answers == [[5, 2], [6, 7, 8, 9]]
    call = model.calls[0]
    assert call["input_ids"].tolist() == [[1, 4, 4], [0, 0, 1]]  # left-padded with 0
    assert call["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert (call["training"], call["do_sample"], call["temperature"]) == (False, True, 0.7)
    assert model.training


def test_generate_text_is_greedy_hf_generation(tiny_llama_bundle: Path) -> None:
    import tinyllm

    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    tok = loaded.tokenizer
    tok.padding_side = "left"
    tok.pad_token = tok.pad_token or tok.eos_token
    texts = ["hello there", "a longer prompt than the first"]
    got = generate_text(loaded.model, tok, texts, 5)
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = loaded.model.generate(
        **batch,
        max_new_tokens=5,
        do_sample=False,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
    )
    want = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    assert got == want
    torch.manual_seed(0)
    sampled = generate_text(loaded.model, tok, texts, 5, samples=3, temperature=1.0)
    assert len(sampled) == 6
