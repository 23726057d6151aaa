"""The options of ``tinyllm prune``: pruning policy, calibration sizes, healing.

A leaf module (no numpy, no torch, no other compress module): :mod:`tinyllm.api` reads
its parameter defaults from these dataclasses, so importing the API must not load the
pruning stage itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinyllm.errors import ConfigError


def check_ratio(ratio: float) -> float:
    """Validate a target parameter ratio: a number in (0, 1]."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 < ratio <= 1.0:
        raise ConfigError(
            f"prune ratio must be in (0, 1] (the fraction of parameters kept, e.g. 0.8), "
            f"got {ratio!r}"
        )
    return float(ratio)


@dataclass(frozen=True)
class HealConfig:
    """Healing hyper-parameters (AdamW on every weight of the pruned model)."""

    steps: int = 60
    batch_size: int = 2
    lr: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class PruneOptions:
    """How to prune: calibration sizes, plan policy, healing."""

    ratio: float = 0.8
    calib_samples: int = 16
    vocab_samples: int = 2000
    min_vocab: int = 8192
    mlp_floor: float = 0.5
    head_floor: float = 0.5
    heal: HealConfig = field(default_factory=HealConfig)
    heal_samples: int = 200

    def check(self) -> None:
        """Reject out-of-range options with a message naming the option."""
        check_ratio(self.ratio)
        if self.calib_samples < 1:
            raise ConfigError(
                f"calib_samples must be >= 1 (examples per task for the activation "
                f"statistics), got {self.calib_samples}"
            )
        if self.vocab_samples < 1 or self.min_vocab < 0 or self.heal_samples < 0:
            raise ConfigError("vocab_samples must be >= 1, min_vocab and heal_samples >= 0")
        for name in ("mlp_floor", "head_floor"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1], got {getattr(self, name)}")
