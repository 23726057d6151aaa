"""The report of ``tinyllm profile``: a dict (JSON), a terminal table, and the files
(``profile.json``, ``report.html``, ``trace.json``) written to the output folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tinyllm.bundle import Bundle
from tinyllm.errors import ConfigError
from tinyllm.runtime.engine import pick_engine
from tinyllm.runtime.profile import EngineProfile, ProfileOptions, Progress, profile_engine
from tinyllm.runtime.profilenative import NativeProfile, profile_native
from tinyllm.runtime.profilesweep import (
    SLONotMetError,
    SweepPoint,
    apply_settings,
    frontier,
    parse_sweep,
    recommend,
    run_sweep,
)
from tinyllm.runtime.servingdefaults import ServingDefaults, read_defaults
from tinyllm.runtime.steprecorder import LABELS

SECTIONS = (
    "latency",
    "phases",
    "operators",
    "roofline",
    "memory",
    "batch",
    "quality",
    "compare",
    "sweep",
)


def engine_dict(p: EngineProfile | NativeProfile) -> dict[str, Any]:
    """One engine's profile as plain data."""
    if isinstance(p, NativeProfile):
        return p.to_dict()
    s = p.summary
    return {
        "runtime": "python",
        "bundle": p.bundle,
        "engine": p.engine,
        "precision": p.precision,
        "settings": asdict(p.settings),
        "workload": p.workload,
        "latency": {"single_stream": s["single_stream"], "under_load": s["under_load"]},
        "phases": {
            **s["phases"],
            "per_token": s["per_token"],
            "single_stream_per_token": s["single_stream_per_token"],
            "per_step": s["per_step"],
            "single_stream_per_step": s["single_stream_per_step"],
        },
        "operators": p.ops.to_dict() if p.ops is not None else None,
        "roofline": p.roofline,
        "memory": p.memory,
        "batch": s["by_batch"],
        "quality": p.quality,
        "overhead": p.overhead,
        "requests": [
            {
                "task": r.task,
                "prompt_tokens": r.prompt_tokens,
                "output_tokens": r.output_tokens,
                "ttft_ms": 1e3 * r.ttft_s,
                "e2e_ms": 1e3 * r.e2e_s,
                "queue_ms": 1e3 * r.queue_s,
                "error": r.error,
            }
            for r in p.loaded.requests
        ],
    }


@dataclass
class ProfileReport:
    """A profile, with what was compared, swept and recommended."""

    main: EngineProfile | NativeProfile
    compared: list[EngineProfile | NativeProfile] = field(default_factory=list)
    sweep: list[SweepPoint] = field(default_factory=list)
    slo_ms: float | None = None
    recommended: SweepPoint | None = None
    slo_error: str | None = None
    applied: str | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the main engine's sections, then compare and sweep."""
        return {
            **engine_dict(self.main),
            "compare": [compare_row(p) for p in [self.main, *self.compared]],
            "sweep": {
                "points": [p.to_dict() for p in self.sweep],
                "frontier": [p.to_dict() for p in frontier(self.sweep)],
                "slo_p95_ms": self.slo_ms,
                "recommended": self.recommended.to_dict() if self.recommended else None,
                "slo_error": self.slo_error,
                "applied_to": self.applied,
            },
        }

    def format(self) -> str:
        """The terminal report."""
        return format_report(self.to_dict())

    def write(self, out: Path) -> dict[str, Path]:
        """Write profile.json, report.html and trace.json into ``out``; their paths."""
        from tinyllm.runtime.profilehtml import render_html
        from tinyllm.runtime.profiletrace import chrome_trace, native_trace

        out.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        paths = {"json": out / "profile.json", "html": out / "report.html"}
        paths["trace"] = out / "trace.json"
        paths["json"].write_text(json.dumps(data, indent=2) + "\n")
        paths["html"].write_text(render_html(data))
        trace = (
            native_trace(self.main)
            if isinstance(self.main, NativeProfile)
            else chrome_trace(self.main)
        )
        paths["trace"].write_text(json.dumps(trace))
        return paths


def format_report(data: dict[str, Any]) -> str:
    """The terminal report of a profile's dict (as ``profile.json`` holds it)."""
    lines = _head(data) + _latency(data) + _phases(data) + _operators(data)
    lines += _roofline(data) + _compare(data["compare"]) + _sweep(data["sweep"])
    absent = data.get("absent") or {}
    lines += [f"absent  {k}: {why}" for k, why in absent.items()]
    return "\n".join(lines)


def compare_row(p: EngineProfile | NativeProfile) -> dict[str, Any]:
    """One bundle's line of the comparison."""
    d = engine_dict(p)
    s, load = d["latency"]["single_stream"], d["latency"]["under_load"]
    tpot = (s["tpot_ms"] or {}).get("p50")
    return {
        "bundle": d["bundle"],
        "engine": d["engine"],
        "precision": d["precision"],
        "weights_mib": d["memory"]["weights_bytes"] / 2**20,
        "ttft_p50_ms": (s["ttft_ms"] or {}).get("p50"),
        "tpot_p50_ms": tpot,
        "decode_tok_s": 1e3 / tpot if tpot else None,
        "e2e_p95_ms_loaded": (load["e2e_ms"] or {}).get("p95"),
        "throughput_tok_s": load["throughput_tok_s"],
        "share_of_floor": d["roofline"]["share_of_floor"],
        "greedy_agreement": d["quality"].get("greedy_agreement"),
    }


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def _head(d: dict[str, Any]) -> list[str]:
    s, w = d["settings"], d["workload"]
    return [
        f"tinyllm profile  {d['bundle']}  engine {d['engine']} ({d['precision']}), "
        f"{d.get('runtime', 'python')} runtime",
        f"settings  threads {s['threads'] or 'all'}, max_batch {s['max_batch']}, "
        f"scheduler {s['scheduler']}, prefix cache {s['prefix_cache_mb']:g} MB",
        f"workload  {w['kind']}: {w['requests']} requests, {w['load']}",
        "",
    ]


def _pct(p: dict[str, float] | None) -> str:
    return "-" if not p else f"{p['p50']:.1f}/{p['p90']:.1f}/{p['p99']:.1f}"


def _latency(d: dict[str, Any]) -> list[str]:
    lines = [
        f"{'latency (ms)':<28}{'n':>4}  {'TTFT p50/p90/p99':<24}{'TPOT p50/p90/p99':<20}"
        f"{'e2e p50/p90/p99':<26}{'queue p50':>9}{'tok/s':>9}"
    ]
    for mode, label in (("single_stream", "single stream"), ("under_load", "under load")):
        lat = d["latency"][mode]
        rows = [("all", lat)] + (list(lat["per_task"].items()) if mode == "under_load" else [])
        for name, r in rows:
            queue = _f((r["queue_ms"] or {}).get("p50"))
            lines.append(
                f"{label if name == 'all' else '':<14}{name[:13]:<14}{r['requests']:>4}  "
                f"{_pct(r['ttft_ms']):<23} {_pct(r['tpot_ms']):<19} {_pct(r['e2e_ms']):<25} "
                f"{queue:>8}{r['throughput_tok_s']:>9.1f}"
            )
        if lat["failed"]:
            lines.append(f"  {lat['failed']} failed: {'; '.join(lat['errors'])}")
    return [*lines, ""]


def _phases(d: dict[str, Any]) -> list[str]:
    ph = d["phases"]
    host = "C++" if d.get("runtime") == "cpp" else "Python"
    lines = [f"{'decode loop phases (under load)':<34}{'ms':>10}{'share':>8}"]
    for row in ph["loop"]:
        lines.append(f"  {row['label']:<32}{1e3 * row['seconds']:>10.1f}{row['share']:>8.1%}")
    lines.append(
        f"  outside ONNX Runtime: {ph['outside_ort_share']:.1%} of the loop's busy time; "
        f"{ph['per_token']['outside_ort_ms']:.3f} ms of {host} per generated token "
        f"({ph['single_stream_per_token']['outside_ort_ms']:.3f} single stream), "
        f"{ph['per_step']['outside_ort_ms']:.3f} ms per loop step "
        f"({ph['single_stream_per_step']['outside_ort_ms']:.3f} single stream)"
    )
    profiler = ph["profiler_s"]
    lines.append(
        f"  idle {1e3 * ph['idle_s']:.1f} ms, profiler "
        f"{'-' if profiler is None else format(1e3 * profiler, '.1f')} ms"
    )
    per = ph["per_request_ms"]
    shown = ", ".join(f"{LABELS[k]} {v:.2f}" for k, v in per.items() if v >= 0.005)
    lines.append(f"  per request (mean ms): {shown or '- (absent)'}")
    return [*lines, ""]


def _operators(d: dict[str, Any]) -> list[str]:
    ops = d["operators"]
    if ops is None:
        why = d.get("absent", {}).get("operators", "not profiled (--no-ops)")
        return [f"operators: {why}", ""]
    runs = ops["runs"]
    lines = [
        f"operators (ONNX Runtime profiler; {runs.get('prefill', 0)} prefill and "
        f"{runs.get('decode', 0)} decode runs; kernels are {ops['kernel_coverage']:.0%} "
        "of the run time measured)"
    ]
    for title, key, limit in (
        ("by op type", "by_op_type", 8),
        ("by component", "by_component", 8),
        ("by layer", "by_layer", 6),
    ):
        rows = ops[key]
        total = sum(r["total_ms"] for r in rows) or 1.0
        lines.append(f"  {title:<30}{'prefill ms':>11}{'decode ms':>11}{'share':>8}")
        for r in rows[:limit]:
            lines.append(
                f"    {str(r['key'])[:28]:<28}{r['prefill_ms']:>11.2f}{r['decode_ms']:>11.2f}"
                f"{r['total_ms'] / total:>8.1%}"
            )
    return [*lines, ""]


def _roofline(d: dict[str, Any]) -> list[str]:
    r, m = d["roofline"], d["memory"]
    mib = 2**20
    lines = [
        f"roofline  {r['decode_bytes_per_step'] / 1e6:.2f} MB of weights read per decode "
        f"step (lm head {r['lm_head_bytes'] / max(r['decode_bytes_per_step'], 1):.0%}); "
        f"read bandwidth {r['bandwidth_gb_s']:.1f} GB/s measured, {r['threads']} threads",
        f"          floor {r['floor_step_ms']:.3f} ms/step; decode step {r['decode_step_ms']:.3f}"
        f" ms = {r['share_of_floor']:.0%} of floor speed, {r['achieved_gb_s']:.2f} GB/s; "
        f"prefill {r['prefill_gflop_s']:.1f} GFLOP/s (matmuls)",
        f"memory    peak RSS {m['peak_rss_bytes'] / mib:.0f} MiB; weights "
        f"{m['weights_bytes'] / mib:.1f} MiB, KV cache {m['kv_cache_bytes'] / mib:.1f} MiB, "
        f"adapters {_f(None if m['adapter_bytes'] is None else m['adapter_bytes'] / mib)} MiB, "
        "prefix cache "
        f"{m['prefix_cache_bytes'] / mib:.2f} MiB",
    ]
    if d["batch"]:
        lines.append(
            "decode tok/s by batch  "
            + ", ".join(f"{b['rows']}: {b['tok_s']:.0f}" for b in d["batch"])
        )
    q = d["quality"]
    if q.get("greedy_agreement") is not None:
        lines.append(
            f"quality   {q['source']}: greedy agreement {q['greedy_agreement']:.0%}, "
            f"max |logit err| {q['max_abs_err']:.3g}"
        )
    if d["overhead"]:
        o = d["overhead"]
        lines.append(
            f"overhead  median latency {o['median_latency_ms_unprofiled']:.1f} ms unprofiled, "
            f"{o['median_latency_ms_recorded']:.1f} ms recorded: {o['overhead']:+.1%} "
            f"[{o['overhead_min']:+.1%} to {o['overhead_max']:+.1%}] over {o['rounds']} "
            "interleaved rounds"
        )
    return [*lines, ""]


def _compare(rows: list[dict[str, Any]]) -> list[str]:
    if len(rows) < 2:
        return []
    lines = [
        f"{'compare':<34}{'prec':<6}{'MiB':>7}{'TTFT':>8}{'TPOT':>8}{'tok/s 1':>9}"
        f"{'p95 load':>10}{'tok/s load':>11}{'floor':>7}{'agree':>7}"
    ]
    for r in rows:
        agree = r["greedy_agreement"]
        lines.append(
            f"{Path(r['bundle']).name[:32]:<34}{r['precision']:<6}{r['weights_mib']:>7.1f}"
            f"{_f(r['ttft_p50_ms']):>8}{_f(r['tpot_p50_ms'], '.2f'):>8}"
            f"{_f(r['decode_tok_s']):>9}{_f(r['e2e_p95_ms_loaded']):>10}"
            f"{r['throughput_tok_s']:>11.1f}{r['share_of_floor']:>7.0%}"
            f"{'-' if agree is None else format(agree, '.0%'):>7}"
        )
    return [*lines, ""]


def _sweep(sweep: dict[str, Any]) -> list[str]:
    if not sweep["points"]:
        return []
    points = sweep["points"]
    keys = [k for k in points[0]["settings"] if len({str(p["settings"][k]) for p in points}) > 1]
    keys = keys or ["max_batch"]
    lines = [f"{'sweep':<30}{'tok/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'failed':>7}  SLO"]
    for p in sweep["points"]:
        label = " ".join(f"{k}={p['settings'][k]}" for k in keys)
        slo = {True: "met", False: "missed", None: "-"}[p["meets_slo"]]
        lines.append(
            f"  {label:<28}{p['throughput_tok_s']:>9.1f}{p['e2e_p50_ms']:>9.1f}"
            f"{p['e2e_p95_ms']:>9.1f}{p['failed']:>7}  {slo}"
        )
    best = sweep["recommended"]
    if best is not None:
        chosen = ", ".join(f"{k}={best['settings'][k]}" for k in keys)
        lines.append(
            f"recommended (p95 <= {sweep['slo_p95_ms']:g} ms): {chosen} -> "
            f"{best['throughput_tok_s']:.1f} tok/s at p95 {best['e2e_p95_ms']:.1f} ms"
        )
    if sweep["slo_error"]:
        lines.append(f"no recommendation: {sweep['slo_error']}")
    if sweep["applied_to"]:
        lines.append(f"applied: serving defaults written into {sweep['applied_to']}")
    return [*lines, ""]


def run_profile(
    bundle: Bundle,
    options: ProfileOptions,
    *,
    threads: int | None = None,
    compare: Sequence[Bundle] = (),
    sweep: Sequence[str] = (),
    slo_ms: float | None = None,
    apply: bool = False,
    out: Path | None = None,
    progress: Progress | None = None,
) -> ProfileReport:
    """Profile ``bundle``, the bundles to ``compare`` with, and the ``sweep``'s settings;
    recommend the fastest setting within ``slo_ms`` and, with ``apply``, write it into
    the bundle (nothing is written when no setting meets the SLO: the report says why).
    """
    if apply and slo_ms is None:
        raise ConfigError("--apply needs --slo-p95-ms (the latency the setting must meet)")
    if slo_ms is not None and not slo_ms > 0:
        raise ConfigError(f"the SLO must be > 0 ms, got {slo_ms}")
    grid = parse_sweep(sweep)

    def settings_of(b: Bundle) -> ServingDefaults:
        folder = b.path / pick_engine(b, options.engine, "cpu").path
        return read_defaults(folder).with_given(threads=threads)

    if options.runtime == "cpp" and (grid or slo_ms is not None):
        raise ConfigError(
            "--sweep and --slo-p95-ms tune the Python runtime's serving settings; run them "
            "with --runtime python (the C++ server has fewer settings: threads, max_batch)"
        )

    def one(b: Bundle, where: Path | None) -> EngineProfile | NativeProfile:
        if options.runtime == "cpp":
            return profile_native(b, options, settings_of(b), progress)
        return profile_engine(b, options, settings_of(b), where, progress)

    main = one(bundle, out)
    report = ProfileReport(main, slo_ms=slo_ms)
    for other in compare:
        report.compared.append(one(other, None))
    if grid or slo_ms is not None:
        report.sweep = run_sweep(bundle, options, settings_of(bundle), grid, slo_ms, progress)
    if slo_ms is not None:
        try:
            report.recommended = recommend(report.sweep, slo_ms)
        except SLONotMetError as e:
            report.slo_error = str(e)
    if apply and report.recommended is not None:
        chosen_by = {"slo_p95_ms": slo_ms, "workload": main.workload, "sweep": list(sweep)}
        written = apply_settings(bundle, options.engine, report.recommended, chosen_by)
        report.applied = str(written.path)
    return report
