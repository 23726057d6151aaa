"""``tinyllm distill``'s choice of training loop: ``own`` or ``trl``, and the trl options."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainerChoice:
    """Which training loop runs (``own`` or ``trl``) and the trl backend's options."""

    backend: str = "own"
    run_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    grad_accum: int = 1
    precision: str = "fp32"

    def trl_options(self) -> Any:
        """The TrlOptions (checked), or None for the own backend (which takes none)."""
        if self.backend != "trl":
            changed = [
                name
                for name, value in (
                    ("run_dir", self.run_dir),
                    ("checkpoint_every", self.checkpoint_every),
                    ("resume", self.resume or None),
                    ("grad_accum", None if self.grad_accum == 1 else self.grad_accum),
                    ("precision", None if self.precision == "fp32" else self.precision),
                )
                if value is not None
            ]
            if changed:
                from tinyllm.errors import ConfigError

                raise ConfigError(
                    f"{', '.join(changed)}: options of --backend trl, not of {self.backend!r}"
                )
            return None
        from tinyllm.distill.trlbackend import TrlOptions

        return TrlOptions(
            run_dir=str(self.run_dir) if self.run_dir is not None else None,
            save_steps=self.checkpoint_every,
            resume=self.resume,
            grad_accum=self.grad_accum,
            precision=self.precision,  # type: ignore[arg-type]
        )
