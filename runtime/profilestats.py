"""Summaries of what the profiler recorded: latency percentiles per task, the loop's
phases, decode speed per batch size. Pure functions over
:mod:`tinyllm.runtime.steprecorder` records."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tinyllm.runtime.steprecorder import (
    LABELS,
    ORT_PHASES,
    PHASES,
    RequestRecord,
    StepRecord,
)

PERCENTILES = (50, 90, 99)


def percentiles(values: list[float], scale: float = 1e3) -> dict[str, float] | None:
    """p50/p90/p99 (and p95, the SLO's) of ``values`` times ``scale`` (ms); None if empty."""
    if not values:
        return None
    array = np.asarray(values, np.float64) * scale
    out = {f"p{p}": float(np.percentile(array, p)) for p in (*PERCENTILES, 95)}
    out["mean"] = float(array.mean())
    return out


def latency(requests: list[RequestRecord], wall_s: float) -> dict[str, Any]:
    """Overall and per-task TTFT, time per output token, end-to-end and queue wait (ms
    percentiles), and throughput over ``wall_s``."""
    result = _latency_of(requests, wall_s)
    tasks: dict[str, list[RequestRecord]] = defaultdict(list)
    for r in requests:
        tasks[r.task].append(r)
    result["per_task"] = {name: _latency_of(rs, wall_s) for name, rs in sorted(tasks.items())}
    return result


def _latency_of(requests: list[RequestRecord], wall_s: float) -> dict[str, Any]:
    ok = [r for r in requests if r.error is None]
    tokens = sum(r.output_tokens for r in ok)
    tpot = [t for t in (r.tpot_s for r in ok) if t is not None]
    return {
        "requests": len(requests),
        "failed": len(requests) - len(ok),
        "output_tokens": tokens,
        "prompt_tokens": sum(r.prompt_tokens for r in ok),
        "ttft_ms": percentiles([r.ttft_s for r in ok]),
        "tpot_ms": percentiles(tpot),
        "e2e_ms": percentiles([r.e2e_s for r in ok]),
        "queue_ms": percentiles([r.queue_s for r in ok]),
        "throughput_tok_s": tokens / wall_s if wall_s > 0 else 0.0,
        "throughput_req_s": len(ok) / wall_s if wall_s > 0 else 0.0,
        "errors": sorted({r.error for r in requests if r.error})[:3],
    }


def phases(totals: dict[str, float], requests: list[RequestRecord]) -> dict[str, Any]:
    """The loop's time per phase (seconds and share of its busy time), the share outside
    ONNX Runtime, and each phase's mean per request (ms)."""
    busy = sum(totals[p] for p in PHASES)
    ort = sum(totals[p] for p in ORT_PHASES)
    loop = [
        {
            "phase": p,
            "label": LABELS[p],
            "seconds": totals[p],
            "share": totals[p] / busy if busy > 0 else 0.0,
        }
        for p in PHASES
    ]
    per_request: dict[str, float] = {}
    ok = [r for r in requests if r.error is None]
    for name in ("tokenize", "prompt_build", "queue", *PHASES):
        values = [r.phases.get(name, 0.0) for r in ok]
        per_request[name] = 1e3 * float(np.mean(values)) if values else 0.0
    return {
        "loop": loop,
        "busy_s": busy,
        "idle_s": totals["idle"],
        "profiler_s": totals["profiler"],
        "ort_s": ort,
        "outside_ort_share": (busy - ort) / busy if busy > 0 else 0.0,
        "per_request_ms": per_request,
        "client_s": sum(
            r.phases.get("tokenize", 0.0) + r.phases.get("prompt_build", 0.0) for r in requests
        ),
    }


def per_token(steps: list[StepRecord], output_tokens: int) -> dict[str, float]:
    """Python's time per generated token outside ONNX Runtime (ms), and ONNX Runtime's."""
    busy = sum(sum(s.phases.values()) for s in steps)
    ort = sum(s.phases[p] for s in steps for p in ORT_PHASES)
    n = max(output_tokens, 1)
    return {"outside_ort_ms": 1e3 * (busy - ort) / n, "ort_ms": 1e3 * ort / n}


def per_step(steps: list[StepRecord]) -> dict[str, float]:
    """Python's time per loop step outside ONNX Runtime (ms), ONNX Runtime's, and the
    steps (decode_steps: those that ran a decode run)."""
    busy = sum(sum(s.phases.values()) for s in steps)
    ort = sum(s.phases.get(p, 0.0) for s in steps for p in ORT_PHASES)
    n = max(len(steps), 1)
    return {
        "outside_ort_ms": 1e3 * (busy - ort) / n,
        "ort_ms": 1e3 * ort / n,
        "steps": len(steps),
        "decode_steps": sum(1 for s in steps if s.decode_rows),
    }


def by_batch(steps: list[StepRecord]) -> list[dict[str, float]]:
    """Decode-only steps grouped by rows decoded: mean step time and tokens/s."""
    groups: dict[int, list[float]] = defaultdict(list)
    for s in steps:
        if s.decode_rows and not s.prefill_rows:
            groups[s.decode_rows].append(s.end - s.start)
    return batch_table(groups)


def batch_table(groups: dict[int, list[float]]) -> list[dict[str, float]]:
    """Decode step times grouped by rows (rows -> seconds each): one row of the batch
    table per group, by rows, with the mean step time and tokens/s."""
    return [
        {
            "rows": rows,
            "steps": len(times),
            "step_ms": 1e3 * float(np.mean(times)),
            "tok_s": rows / float(np.mean(times)),
        }
        for rows, times in sorted(groups.items())
    ]


def decode_runs(steps: list[StepRecord]) -> list[float]:
    """Seconds of each ONNX Runtime run of a one-row decode-only step (the roofline's)."""
    runs = [
        e - s
        for step in steps
        if step.decode_rows == 1 and not step.prefill_rows
        for kind, s, e in step.runs
        if kind == "decode"
    ]
    if runs:
        return runs
    return [e - s for step in steps for kind, s, e in step.runs if kind == "decode"]


def prefill_work(steps: list[StepRecord]) -> tuple[float, int]:
    """(seconds of ONNX Runtime prefill runs, prompt tokens they prefilled)."""
    seconds = sum(e - s for step in steps for kind, s, e in step.runs if kind == "prefill")
    return seconds, sum(step.prefill_tokens for step in steps)


def ab_overhead(plain: list[float], recorded: list[float]) -> dict[str, Any]:
    """The recorder's overhead from interleaved rounds: ``plain[k]`` and ``recorded[k]``
    are round k's median latency (s) without and with it. Per round the overhead is
    recorded / plain - 1; reported as its median and range over the rounds.

    Raises ValueError for no rounds, unequal counts or a latency that is not > 0.
    """
    if not plain or len(plain) != len(recorded):
        raise ValueError(
            f"need the same number (>= 1) of rounds each, got {len(plain)} and {len(recorded)}"
        )
    if min(plain + recorded) <= 0:
        raise ValueError("every round's latency must be > 0")
    ratios = [b / a - 1 for a, b in zip(plain, recorded, strict=True)]
    return {
        "rounds": len(ratios),
        "median_latency_ms_unprofiled": 1e3 * float(np.median(plain)),
        "median_latency_ms_recorded": 1e3 * float(np.median(recorded)),
        "overhead": float(np.median(ratios)),
        "overhead_min": min(ratios),
        "overhead_max": max(ratios),
        "per_round": ratios,
    }
