"""Multi-task serving on CPU: one shared engine against its peers, same trace, one run.

Peers (each in its own process, so peak memory is its own): (a) ``continuous`` — the
engine's continuous batching scheduler over one base model with a LoRA slot per task;
``nocache`` — the same without the per-task prefix cache; (b) ``fifo`` — FIFO static
batches on the same engine; (c) ``merged`` — one engine per task with its adapter merged
(the one-deployment-per-task setup); (d) ``hf`` — Hugging Face transformers + peft,
static batches of mixed adapters (``adapter_names=``); ``cpp`` — the C++ runtime's
server (libtinyllm, built by ``make cpp``) on the same engine files, as ``continuous``
runs them (``--modes continuous,cpp``; not in the default modes: it needs the library).
``one`` is a single merged engine: the memory of "one model".

Workload: N synthetic tasks (random LoRA adapters; speed does not depend on their
values), Zipf task mix, Poisson arrivals, log-normal input and output lengths
(serving_trace.py), at rates that are multiples of the single-stream capacity measured
first. SLO: a request's latency within ``--slo-scale`` times its unloaded single-stream
latency (TTFT + tokens x time per output token, measured first). Adding a task under
load: the ``continuous`` process adds a 9th task mid-trace at the highest rate and
reports throughput before/after and failures.

    .venv/bin/python benchmarks/multitask_serving.py            # SmolLM2-135M, ~15 min
    .venv/bin/python benchmarks/multitask_serving.py --quick    # tiny model, ~2 min
    .venv/bin/python benchmarks/multitask_serving.py --shots 3  # prompts with worked examples
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serving_trace import Completion, slo_seconds, summarize

OUT = Path("out/bench")
MODES = ("continuous", "nocache", "fifo", "merged", "hf")


def run_worker(mode: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one mode in a fresh process; returns its JSON result."""
    here = Path(__file__).resolve().parent
    cmd = [sys.executable, str(here / "serving_workers.py"), mode, json.dumps(config)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def analyse(results: dict[str, Any], calib: dict[str, Any], scale: float) -> dict[str, Any]:
    """Per mode and rate: the summary with the SLO from the calibration."""

    def slo(c: Completion) -> float:
        return slo_seconds(c, calib["ttft_s"], calib["tpot_s"], scale)

    table: dict[str, Any] = {}
    for mode, result in results.items():
        table[mode] = {
            "peak_rss_mib": result["peak_rss_mib"],
            "prefix_cache": result.get("prefix_cache"),
            "rates": {
                rate: summarize([Completion(**c) for c in done], slo)
                for rate, done in result["runs"].items()
            },
        }
    return table


def print_table(table: dict[str, Any], one_mib: float) -> None:
    """The short table: one line per mode and rate."""
    head = f"{'mode':<11}{'rate':>7}{'tok/s':>8}{'p50 s':>8}{'p99 s':>8}{'ttft50':>8}"
    print(head + f"{'ttft99':>8}{'SLO %':>7}{'fail':>5}{'peak MiB':>10}{'x one':>7}")
    for mode, entry in table.items():
        for rate, s in entry["rates"].items():
            print(
                f"{mode:<11}{float(rate):>7.2f}{s['throughput_tok_s']:>8.1f}"
                f"{s['latency_p50_s']:>8.2f}{s['latency_p99_s']:>8.2f}{s['ttft_p50_s']:>8.2f}"
                f"{s['ttft_p99_s']:>8.2f}{100 * s['slo_attainment']:>7.1f}{s['failed']:>5}"
                f"{entry['peak_rss_mib']:>10.0f}{entry['peak_rss_mib'] / one_mib:>7.2f}"
            )


def targets(table: dict[str, Any], one_mib: float) -> dict[str, Any]:
    """The issue's ratios: continuous vs fifo at the highest rate and where fifo < 50% SLO."""
    a, b = table.get("continuous"), table.get("fifo")
    out: dict[str, Any] = {}
    if a and b:
        top = max(a["rates"], key=float)
        out["throughput_x_fifo_at_top_rate"] = a["rates"][top]["throughput_tok_s"] / max(
            b["rates"][top]["throughput_tok_s"], 1e-9
        )
        out["slo_where_fifo_below_50"] = {
            rate: {
                "continuous": a["rates"][rate]["slo_attainment"],
                "fifo": s["slo_attainment"],
                "x": a["rates"][rate]["slo_attainment"] / s["slo_attainment"]
                if s["slo_attainment"]
                else None,  # fifo met none: no finite ratio
            }
            for rate, s in b["rates"].items()
            if s["slo_attainment"] < 0.5
        }
    c = table.get("nocache")
    if a and c:  # the prefix cache: same scheduler with and without it
        out["ttft_p50_cache_x_nocache"] = {
            rate: a["rates"][rate]["ttft_p50_s"] / max(s["ttft_p50_s"], 1e-9)
            for rate, s in c["rates"].items()
        }
        out["throughput_cache_x_nocache"] = {
            rate: a["rates"][rate]["throughput_tok_s"] / max(s["throughput_tok_s"], 1e-9)
            for rate, s in c["rates"].items()
        }
    cpp = table.get("cpp")
    if a and cpp:  # the C++ runtime against the Python one, same engine files and trace
        out["cpp_x_python"] = {
            rate: {
                "throughput": s["throughput_tok_s"]
                / max(a["rates"][rate]["throughput_tok_s"], 1e-9),
                "latency_p95": s["latency_p95_s"] / max(a["rates"][rate]["latency_p95_s"], 1e-9),
            }
            for rate, s in cpp["rates"].items()
        }
    for mode, entry in table.items():
        out[f"memory_x_one_{mode}"] = entry["peak_rss_mib"] / one_mib
    if a and "merged" in table:
        # One shared service against N single-task services: memory (what sets how many
        # machines are needed) and tokens/s per GiB at the highest rate.
        merged = table["merged"]
        top = max(a["rates"], key=float)
        out["cost_reduction_memory_x"] = merged["peak_rss_mib"] / a["peak_rss_mib"]
        out["tok_s_per_gib_shared_vs_per_task_x"] = (
            a["rates"][top]["throughput_tok_s"] / a["peak_rss_mib"]
        ) / max(merged["rates"][top]["throughput_tok_s"] / merged["peak_rss_mib"], 1e-9)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny-llama, 24 requests a rate")
    parser.add_argument("--model", default=None, help="preset (default smollm2-135m)")
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--requests", type=int, default=None, help="requests per rate")
    parser.add_argument("--rates-x", default="1,2,4", help="multiples of 1-stream capacity")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--slo-scale", type=float, default=5.0)
    parser.add_argument("--no-add", action="store_true", help="skip adding a task under load")
    parser.add_argument("--shots", type=int, default=0, help="worked examples per instruction")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per engine")
    parser.add_argument("--quant", choices=["int4", "int8"], default=None, help="engine weights")
    args = parser.parse_args(argv)
    if unknown := sorted(set(args.modes.split(",")) - {*MODES, "cpp"}):
        parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join((*MODES, 'cpp'))}")
    model = args.model or ("tiny-llama" if args.quick else "smollm2-135m")
    n = args.requests or (24 if args.quick else 48)
    config: dict[str, Any] = {
        "model": model,
        "tasks": args.tasks,
        "max_batch": args.max_batch,
        "max_seq_len": 256 if args.quick else 1024,
        "mean_out": 16 if args.quick else 32,
        "max_out": 48 if args.quick else 160,
        "max_words": 40 if args.quick else 200,
        "serve_seq_len": 256 if args.quick else 512,  # KV reserved per engine
        "n": n,
        "shots": args.shots,
        "threads": args.threads,
        "quant": args.quant,
    }
    start = time.perf_counter()
    calib = run_worker("calibrate", config)
    print(f"single stream: TTFT {calib['ttft_s']:.3f} s, {calib['tpot_s'] * 1e3:.1f} ms/token")
    capacity = 1.0 / (calib["ttft_s"] + config["mean_out"] * calib["tpot_s"])
    config["rates"] = [float(x) * capacity for x in args.rates_x.split(",")]
    config["add_task"] = not args.no_add
    results = {mode: run_worker(mode, config) for mode in args.modes.split(",")}
    one = run_worker("one", config)["peak_rss_mib"]
    table = analyse(results, calib, args.slo_scale)
    print_table(table, one)
    summary = targets(table, one)
    added = results.get("continuous", {}).get("add_under_load")
    if added:
        summary["add_under_load"] = added
    print(json.dumps(summary, indent=1))
    OUT.mkdir(parents=True, exist_ok=True)
    tag = ("-quick" if args.quick else "") + (f"-shots{args.shots}" if args.shots else "")
    tag += f"-{args.quant}" if args.quant else ""
    out = OUT / f"multitask_serving{tag}.json"
    record = {
        "config": config,
        "calibration": calib,
        "one_model_peak_rss_mib": one,
        "table": table,
        "summary": summary,
        "seconds": time.perf_counter() - start,
        "caveat": "2 shared CPU cores (other jobs running): ratios, not absolute speeds",
    }
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out} in {record['seconds']:.0f} s")


if __name__ == "__main__":
    main()
