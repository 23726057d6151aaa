"""Choosing the next token from logits: greedy, or temperature / top-k / top-p with a seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class GenerationConfig:
    """How to generate. ``temperature == 0`` is greedy; ``seed`` makes sampling repeatable.

    ``stop`` strings end generation (and are cut from the text); generation also ends at
    the tokenizer's end-of-sequence token unless ``ignore_eos`` (for benchmarks).
    ``speculate``: greedy decoding may draft tokens from the prompt and verify them in one
    step (:mod:`tinyllm.runtime.speculative`); the tokens are the same, only faster when
    the output copies the input. Sampling ignores it.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    ignore_eos: bool = False
    speculate: bool = False

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:  # NaN fails this too
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")


def sample(logits: np.ndarray, config: GenerationConfig, rng: np.random.Generator) -> int:
    """Pick one token id from ``logits [V]``."""
    import numpy as np  # here, so the CLI reads GenerationConfig without loading numpy

    if config.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / config.temperature
    if 0 < config.top_k < scaled.shape[0]:
        kth = np.partition(scaled, -config.top_k)[-config.top_k]
        scaled = np.where(scaled < kth, -np.inf, scaled)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if config.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, config.top_p)) + 1]
        mask = np.zeros_like(probs)
        mask[keep] = probs[keep]
        probs = mask / mask.sum()
    return int(rng.choice(probs.shape[0], p=probs))
