"""What ``tinyllm profile`` runs: its options, checked when made.

A leaf (no engine, no onnx): :mod:`tinyllm.api` reads its defaults, and
:mod:`tinyllm.runtime.profile` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError
from tinyllm.tasks import BUILTIN

if TYPE_CHECKING:
    from tinyllm.runtime.loadgen import Load


@dataclass(frozen=True)
class ProfileOptions:
    """What a profile runs. See ``tinyllm profile --help``.

    ``single_stream`` and ``op_requests`` are the requests of passes 1 and 3;
    ``bandwidth_mib`` the buffer the bandwidth is measured over; ``overhead`` also runs
    pass 2 without the recorder and with it, ``overhead_rounds`` times each, interleaved,
    to measure what recording costs.
    """

    engine: str | None = None
    runtime: str = "python"
    workload: str = BUILTIN
    requests: int = 32
    rate: float | None = None
    concurrency: int | None = None
    prompt_len: int | None = None
    new_tokens: int | None = None
    single_stream: int = 4
    ops: bool = True
    op_requests: int = 4
    bandwidth_mib: int = 256
    overhead: bool = False
    overhead_rounds: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.runtime not in ("python", "cpp"):
            raise ConfigError(f"runtime must be 'python' or 'cpp', got {self.runtime!r}")
        for name in (
            "requests",
            "single_stream",
            "op_requests",
            "bandwidth_mib",
            "overhead_rounds",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rate is not None and self.concurrency is not None:
            raise ConfigError("give --rate or --concurrency, not both")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate must be > 0 requests per second, got {self.rate}")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        for name in ("prompt_len", "new_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")

    def load(self, max_batch: int) -> Load:
        """Pass 2's load: the rate, else the concurrency (default: ``max_batch``)."""
        from tinyllm.runtime.loadgen import Load

        if self.rate is not None:
            return Load(rate=self.rate, seed=self.seed)
        return Load(concurrency=self.concurrency or max_batch)
