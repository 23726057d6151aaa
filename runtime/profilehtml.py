"""The self-contained HTML report of a profile: tables and inline-SVG plots (latency CDF
per task, phases, operators, decode tok/s by batch size, the sweep's frontier)."""

from __future__ import annotations

from html import escape
from typing import Any

from tinyllm.runtime.profilesvg import bar_plot, line_plot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
.note { color: #666; font-size: 13px; }
"""


def render_html(d: dict[str, Any]) -> str:
    """The report page for a profile's dict (:meth:`ProfileReport.to_dict`)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>tinyllm profile: {escape(d['bundle'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>tinyllm profile</h1><p>{escape(d['bundle'])}, engine {escape(d['engine'])} "
        f"({escape(d['precision'])}); workload {escape(d['workload']['kind'])}, "
        f"{d['workload']['requests']} requests, {escape(d['workload']['load'])}; "
        f"settings {escape(_settings(d['settings']))}</p>",
    ]
    parts += _latency(d) + _phases(d) + _operators(d) + _roofline(d) + _batch(d)
    parts += _quality(d) + _compare(d) + _sweep(d) + _absent(d)
    parts.append("</body></html>")
    return "\n".join(parts)


def _settings(s: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in s.items())


def _figure(name: str, svg: str) -> str:
    return f'<figure class="plot" data-plot="{name}">{svg}</figure>'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return escape(str(v if v is not None else "-"))

    lines = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows]
    return "\n".join([*lines, "</table>"])


def _cdf(values: list[float]) -> list[tuple[float, float]]:
    ordered = sorted(values)
    return [(v, (i + 1) / len(ordered)) for i, v in enumerate(ordered)]


def _latency(d: dict[str, Any]) -> list[str]:
    rows = []
    for mode in ("single_stream", "under_load"):
        lat = d["latency"][mode]
        named = [("all", lat), *lat.get("per_task", {}).items()]
        for name, r in named:
            p = [r[k] or {} for k in ("ttft_ms", "tpot_ms", "e2e_ms", "queue_ms")]
            rows.append(
                [
                    mode.replace("_", " "),
                    name,
                    r["requests"],
                    r["failed"],
                    *(x.get(q) for x in p[:3] for q in ("p50", "p90", "p99")),
                    p[3].get("p50"),
                    r["throughput_tok_s"],
                ]
            )
    head = ["pass", "task", "n", "failed", "TTFT p50", "p90", "p99", "TPOT p50", "p90", "p99"]
    head += ["e2e p50", "p90", "p99", "queue p50", "tok/s"]
    ok = [r for r in d["requests"] if r["error"] is None]
    series = {"all": _cdf([r["e2e_ms"] for r in ok])}
    for task in sorted({r["task"] for r in ok}):
        series[task] = _cdf([r["e2e_ms"] for r in ok if r["task"] == task])
    cdf = line_plot(series, "End-to-end latency CDF per task (under load)", "ms", "fraction")
    return ['<h2 id="latency">Latency (ms)</h2>', _table(head, rows), _figure("latency-cdf", cdf)]


def _phases(d: dict[str, Any]) -> list[str]:
    ph = d["phases"]
    rows = [[r["label"], 1e3 * r["seconds"], f"{r['share']:.1%}"] for r in ph["loop"]]
    bars = bar_plot(
        [(r["label"], [1e3 * r["seconds"]]) for r in ph["loop"]],
        ["ms"],
        "Decode loop phases (under load)",
        "ms",
    )
    per = ph["per_request_ms"]
    host = "C++" if d.get("runtime") == "cpp" else "Python"
    profiler = "-" if ph["profiler_s"] is None else f"{1e3 * ph['profiler_s']:.1f}"
    return [
        '<h2 id="phases">Phases</h2>',
        f"<p>Outside ONNX Runtime: {ph['outside_ort_share']:.1%} of the loop's busy time, "
        f"{ph['per_token']['outside_ort_ms']:.3f} ms of {host} per generated token under "
        f"load ({ph['single_stream_per_token']['outside_ort_ms']:.3f} single stream), "
        f"{ph['per_step']['outside_ort_ms']:.3f} ms per loop step "
        f"({ph['single_stream_per_step']['outside_ort_ms']:.3f} single stream). "
        f"Idle {1e3 * ph['idle_s']:.1f} ms; the profiler itself {profiler} ms.</p>",
        _table(["phase", "ms", "share of busy"], rows),
        _table(["per request (mean ms)", "ms"], [[k, v] for k, v in per.items()]),
        _figure("phases", bars),
    ]


def _operators(d: dict[str, Any]) -> list[str]:
    ops = d["operators"]
    if ops is None:
        why = escape(d.get("absent", {}).get("operators", "not profiled (--no-ops)"))
        return [f'<h2 id="operators">Operators</h2><p class="note">{why}</p>']
    out = [
        '<h2 id="operators">Operators</h2>',
        f"<p>ONNX Runtime's profiler: {ops['runs'].get('prefill', 0)} prefill and "
        f"{ops['runs'].get('decode', 0)} decode runs; kernels are "
        f"{ops['kernel_coverage']:.0%} of the run time measured around the runs.</p>",
    ]
    for key, title in (
        ("by_op_type", "op type"),
        ("by_component", "component"),
        ("by_layer", "layer"),
    ):
        rows = ops[key][:12]
        out.append(
            _table(
                [title, "prefill ms", "decode ms", "total ms"],
                [[r["key"], r["prefill_ms"], r["decode_ms"], r["total_ms"]] for r in rows],
            )
        )
        if key != "by_layer":
            bars = bar_plot(
                [(str(r["key"]), [r["prefill_ms"], r["decode_ms"]]) for r in rows],
                ["prefill", "decode"],
                f"Kernel time by {title}",
                "ms",
            )
            out.append(_figure(f"operators-{key.removeprefix('by_').replace('_', '-')}", bars))
    return out


def _roofline(d: dict[str, Any]) -> list[str]:
    r, m = d["roofline"], d["memory"]
    rows = [[k.replace("_", " "), v] for k, v in r.items()]
    mem = [
        [k.replace("_", " ").replace(" bytes", " MiB"), None if v is None else v / 2**20]
        for k, v in m.items()
    ]
    return [
        '<h2 id="roofline">Roofline</h2>',
        _table(["", "value"], rows),
        '<h2 id="memory">Memory</h2>',
        _table(["", "value"], mem),
    ]


def _batch(d: dict[str, Any]) -> list[str]:
    rows = d["batch"]
    series = {"decode steps": [(float(b["rows"]), b["tok_s"]) for b in rows]}
    plot = line_plot(
        series, "Decode tok/s by batch size (under load)", "rows decoded", "tokens/s", markers=True
    )
    table = _table(
        ["rows", "steps", "step ms", "tok/s"],
        [[b["rows"], b["steps"], b["step_ms"], b["tok_s"]] for b in rows],
    )
    return ['<h2 id="batch">Decode speed by batch size</h2>', table, _figure("batch", plot)]


def _quality(d: dict[str, Any]) -> list[str]:
    q = d["quality"]
    text = ", ".join(f"{k}: {v}" for k, v in q.items()) or "none recorded"
    return ['<h2 id="quality">Quality</h2>', f"<p>{escape(text)}</p>"]


def _compare(d: dict[str, Any]) -> list[str]:
    rows = d["compare"]
    if len(rows) < 2:
        return ['<h2 id="compare">Compare</h2><p class="note">one bundle (--compare adds more)</p>']
    head = list(rows[0])
    return ['<h2 id="compare">Compare</h2>', _table(head, [[r[k] for k in head] for r in rows])]


def _sweep(d: dict[str, Any]) -> list[str]:
    sweep = d["sweep"]
    points = sweep["points"]
    if not points:
        return ['<h2 id="sweep">Sweep</h2><p class="note">no sweep (--sweep KEY=V1,V2)</p>']
    keys = [k for k in points[0]["settings"] if len({str(p["settings"][k]) for p in points}) > 1]
    rows = [
        [
            " ".join(f"{k}={p['settings'][k]}" for k in keys),
            p["throughput_tok_s"],
            p["e2e_p50_ms"],
            p["e2e_p95_ms"],
            p["failed"],
            p["meets_slo"],
        ]
        for p in points
    ]
    series = {
        "settings": [(p["e2e_p95_ms"], p["throughput_tok_s"]) for p in points],
        "frontier": [(p["e2e_p95_ms"], p["throughput_tok_s"]) for p in sweep["frontier"]],
    }
    slo = sweep["slo_p95_ms"]
    plot = line_plot(
        series,
        "Sweep: throughput against p95 latency",
        "p95 end-to-end ms",
        "tokens/s",
        markers=True,
        vline=(slo, f"SLO {slo:g} ms") if slo else None,
    )
    best = sweep["recommended"]
    verdict = (
        f"recommended: {escape(_settings({k: best['settings'][k] for k in keys}))}"
        if best
        else escape(sweep["slo_error"] or "no SLO given")
    )
    return [
        '<h2 id="sweep">Sweep</h2>',
        _table(["setting", "tok/s", "p50 ms", "p95 ms", "failed", "meets SLO"], rows),
        f"<p>{verdict}</p>",
        _figure("sweep-frontier", plot),
    ]


def _absent(d: dict[str, Any]) -> list[str]:
    absent = d.get("absent") or {}
    if not absent:
        return []
    rows = [[k, why] for k, why in absent.items()]
    return ['<h2 id="absent">Not measured</h2>', _table(["what", "why"], rows)]
