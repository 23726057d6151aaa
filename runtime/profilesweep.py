"""Sweeps of serving settings for ``tinyllm profile --sweep``, the recommendation under a
latency objective, and writing it into the bundle (``--apply``).

Each setting gets pass 2 of a profile (the workload under load) on a freshly loaded
engine. With ``--rate`` every setting sees the same arrivals; with a concurrency (by
default ``max_batch``) the offered load grows with the batch.
"""

from __future__ import annotations

import itertools
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.errors import ConfigError, TinyLLMError
from tinyllm.lineage import child_manifest, now
from tinyllm.runtime import profilestats as stats
from tinyllm.runtime.engine import pick_engine
from tinyllm.runtime.profile import ProfileOptions, Progress, load_engine, run_pass, workload_items
from tinyllm.runtime.servingdefaults import FILE, ServingDefaults, write_defaults

SWEEPABLE = {
    "threads": int,
    "max_batch": int,
    "max_tasks_per_step": int,
    "chunk_size": int,
    "prefill_tokens": int,
    "prefix_cache_mb": float,
    "scheduler": str,
}


class SLONotMetError(TinyLLMError):
    """No measured setting meets the latency objective (``report``: the profile, if any)."""

    def __init__(self, message: str, report: Any = None) -> None:
        super().__init__(message)
        self.report = report


def parse_sweep(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["threads=1,2", "max_batch=1,4"]`` -> ``{"threads": [1, 2], "max_batch": [1, 4]}``."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise ConfigError(f"sweep {spec!r}: write KEY=V1,V2 (e.g. max_batch=1,4,8)")
        if key not in SWEEPABLE:
            raise ConfigError(f"sweep {spec!r}: {key!r} is not one of {', '.join(SWEEPABLE)}")
        try:
            grid[key] = [SWEEPABLE[key](v.strip()) for v in values.split(",") if v.strip()]
        except ValueError:
            kind = SWEEPABLE[key].__name__
            raise ConfigError(f"sweep {spec!r}: every value of {key} must be an {kind}") from None
    return grid


def settings_grid(base: ServingDefaults, grid: dict[str, list[Any]]) -> list[ServingDefaults]:
    """Every combination of the grid's values, on top of ``base``."""
    keys = list(grid)
    return [
        replace(base, **dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(grid[k] for k in keys))
    ]


@dataclass(frozen=True)
class SweepPoint:
    """One setting's result under load."""

    settings: dict[str, Any]
    throughput_tok_s: float
    e2e_p95_ms: float
    e2e_p50_ms: float
    ttft_p95_ms: float
    failed: int
    meets_slo: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def run_sweep(
    bundle: Bundle,
    options: ProfileOptions,
    base: ServingDefaults,
    grid: dict[str, list[Any]],
    slo_ms: float | None,
    progress: Progress | None = None,
) -> list[SweepPoint]:
    """Measure every setting of the grid under load (pass 2 of a profile)."""
    name = pick_engine(bundle, options.engine, "cpu").path.rstrip("/").split("/")[-1]
    items, _, specs = workload_items(options, bundle)
    points = []
    for settings in settings_grid(base, grid):
        engine = load_engine(bundle, name, settings, items, specs)
        load = options.load(settings.max_batch)
        changed = {k: getattr(settings, k) for k in grid}
        try:
            label = " ".join(f"{k}={v}" for k, v in changed.items())
            result = run_pass(engine, items, load, progress, f"sweep {label}")
        finally:
            engine.close()
        summary = stats.latency(result.requests, result.wall_s)
        e2e, ttft = summary["e2e_ms"] or {}, summary["ttft_ms"] or {}
        p95 = e2e.get("p95", float("inf"))
        points.append(
            SweepPoint(
                {f.name: getattr(settings, f.name) for f in fields(settings)},
                summary["throughput_tok_s"],
                p95,
                e2e.get("p50", float("inf")),
                ttft.get("p95", float("inf")),
                summary["failed"],
                None if slo_ms is None else (p95 <= slo_ms and summary["failed"] == 0),
            )
        )
    return points


def recommend(points: list[SweepPoint], slo_ms: float) -> SweepPoint:
    """The highest-throughput setting whose p95 end-to-end latency is within ``slo_ms``
    with no failed request; none is an error saying how close the best came."""
    if not slo_ms > 0:
        raise ConfigError(f"the SLO must be > 0 ms, got {slo_ms}")
    met = [p for p in points if p.failed == 0 and p.e2e_p95_ms <= slo_ms]
    if not met:
        best = min(points, key=lambda p: p.e2e_p95_ms, default=None)
        closest = "" if best is None else f"; the lowest p95 measured was {best.e2e_p95_ms:.1f} ms"
        raise SLONotMetError(
            f"no setting of the sweep meets p95 <= {slo_ms:g} ms{closest}: relax the SLO, "
            "lower the load (--rate/--concurrency), or sweep smaller max_batch or more "
            "threads"
        )
    return max(met, key=lambda p: p.throughput_tok_s)


def frontier(points: list[SweepPoint]) -> list[SweepPoint]:
    """Settings no other beats on both throughput and p95 latency, by throughput."""
    return sorted(
        (
            p
            for p in points
            if not any(
                q.throughput_tok_s >= p.throughput_tok_s
                and q.e2e_p95_ms <= p.e2e_p95_ms
                and (q.throughput_tok_s, q.e2e_p95_ms) != (p.throughput_tok_s, p.e2e_p95_ms)
                for q in points
            )
        ),
        key=lambda p: p.throughput_tok_s,
    )


def apply_settings(
    bundle: Bundle, engine: str | None, point: SweepPoint, chosen_by: dict[str, Any]
) -> Bundle:
    """Write the point's settings into ``engines/NAME/serving.json`` of ``bundle``: a
    child bundle committed in its place through the bundle writer."""
    entry = pick_engine(bundle, engine, "cpu")
    target = f"{entry.path.rstrip('/')}/{FILE}"
    settings = ServingDefaults(**point.settings)
    record = {
        **chosen_by,
        "measured": point.to_dict(),
        "at": now(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    with BundleWriter(bundle.path, overwrite=True) as writer:
        for file in bundle.manifest.files:
            if file != target:
                writer.copy_file(bundle.path / file, file, bundle.manifest.files[file])
        write_defaults(writer.path(target).parent, settings, record)
        return writer.commit(child_manifest(bundle, "export"))
