"""The report ``tinyllm compress`` prints: size, parameters, per-task error and metric, time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tinyllm.config import to_dict


@dataclass(frozen=True)
class CompressReport:
    """Before/after of one compression run.

    ``task_errors`` is each task's relative output error of the quantized linears on its
    calibration data (mean over weights); ``metrics_before``/``metrics_after`` are the eval
    suite's scores (empty when evaluation was skipped).
    """

    source: str
    out: str
    quant: str
    lora: str
    parameters_before: int
    parameters_after: int
    quantized_parameters: int
    bytes_before: int
    bytes_after: int
    weights_bytes_before: int
    weights_bytes_after: int
    calibrated: list[str]
    reused: list[str]
    task_errors: dict[str, float]
    seconds_calibration: float
    seconds_quantization: float
    seconds: float
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    eval_info: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        result: dict[str, Any] = to_dict(self)
        return result

    def format(self) -> str:
        """The printable report."""
        mib = 2**20
        lines = [
            f"compressed {self.source} -> {self.out} ({self.quant}, lora {self.lora})",
            f"parameters  {self.parameters_before:,} -> {self.parameters_after:,} "
            f"({self.quantized_parameters:,} quantized)",
            f"weights     {self.weights_bytes_before / mib:.1f} MiB -> "
            f"{self.weights_bytes_after / mib:.1f} MiB "
            f"({self.weights_bytes_before / max(self.weights_bytes_after, 1):.1f}x smaller)",
            f"bundle      {self.bytes_before / mib:.1f} MiB -> {self.bytes_after / mib:.1f} MiB on "
            "disk (with the stats/hessians cache)",
            f"calibrated  {', '.join(self.calibrated) or '-'}"
            + (f"; reused cached Hessians of {', '.join(self.reused)}" if self.reused else ""),
        ]
        tasks = sorted(set(self.task_errors) | set(self.metrics_before) | set(self.metrics_after))
        if tasks:
            head = f"{'task':<12}{'out err':>9}{'before':>9}{'after':>9}{'rel':>8}"
            lines += [head, "-" * len(head)]
            for t in tasks:
                err = self.task_errors.get(t)
                b, a = self.metrics_before.get(t), self.metrics_after.get(t)
                rel = (a - b) / b if a is not None and b else None
                pct = "-" if rel is None else f"{100 * rel:+.1f}%"
                lines.append(
                    f"{t:<12}{_num(err, '.2e'):>9}{_num(b, '.3f'):>9}{_num(a, '.3f'):>9}{pct:>8}"
                )
            if self.eval_info:
                lines.append(self.eval_info)
        lines.append(
            f"time        {self.seconds:.1f}s (calibration {self.seconds_calibration:.1f}s, "
            f"quantization {self.seconds_quantization:.1f}s)"
        )
        return "\n".join(lines)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)
