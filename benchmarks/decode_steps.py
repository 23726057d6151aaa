"""Where a decode step's time goes, tinyllm against onnxruntime-genai: ONNX Runtime's own
profile of each engine, each in its own process (decode_worker.py with ``"profile"``).

Both engines run the same kernels (MatMulNBits, GroupQueryAttention), so a gap in decode
speed is either inside ONNX Runtime (``model_run``: the graph and the kernels it picks) or
outside it (the host's per-step work: scheduling, sampling, detokenizing, copies). Per
engine this reports, over the decode steps of one greedy generation (the runs after
prefill, the last one left out), as the median [min-max] over rounds that interleave the
engines and rotate their order:

- ``run_ms``: the median ``model_run`` (ONNX Runtime's whole run of one step);
- ``ops_ms``: per operator type, kernel time per step (summed over the step's nodes);
- ``step_ms``: the wall time per decode step of the same profiled worker,
  ``(t(N) - t(1)) / (N - 1)``, and ``host_ms = step_ms - run_ms``: the time per step
  outside ONNX Runtime (both figures under the profiler, which slows every node a little;
  decode_cpu.py gives the unprofiled speeds).

    nice -n -15 .venv/bin/python benchmarks/decode_steps.py --model smollm2-135m --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from decode_cpu import prompt_ids, spread

OUT = Path("out/bench")
WORKER = Path(__file__).with_name("decode_worker.py")


def decode_runs(events: list[dict[str, Any]], new_tokens: int) -> list[dict[str, Any]]:
    """The ``model_run`` events of the decode steps of one generation of ``new_tokens``
    tokens: the last ``new_tokens - 1`` runs but the very last (an engine may run once
    more after its last token), in time order."""
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    if len(runs) < new_tokens:
        raise ValueError(f"{len(runs)} model runs for {new_tokens} new tokens: not a decode")
    return runs[-(new_tokens - 1) : -1]


def op_times(events: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, float]:
    """Kernel time per step by operator type (ms), over the node events inside ``runs``."""
    spans = np.array([[r["ts"], r["ts"] + r["dur"]] for r in runs])
    totals: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        inside = np.any((spans[:, 0] <= e["ts"]) & (e["ts"] <= spans[:, 1]))
        if inside:
            totals[e["args"].get("op_name", "?")] += e["dur"] / 1e3
    return {op: t / len(runs) for op, t in sorted(totals.items(), key=lambda kv: -kv[1])}


def profile_engine(
    engine: str, path: str, prompts: list[list[int]], args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """One worker with the profiler on: one greedy generation, then its profile."""
    prefix = str(tmp / f"{engine}-b{len(prompts)}")
    spec = {
        "engine": engine,
        "path": path,
        "prompts": prompts,
        "max_new": args.new_tokens,
        "threads": args.threads,
        "spin": args.spin == "on",
        "profile": prefix,
    }
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None

    def ask(command: str) -> dict[str, Any]:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(command + "\n")
        proc.stdin.flush()
        return dict(json.loads(proc.stdout.readline()))

    ready = json.loads(proc.stdout.readline())
    if "error" in ready:
        raise RuntimeError(f"{engine} did not start: {ready['error']}")
    ask(f"gen {args.new_tokens}")  # warm-up
    first = ask("gen 1")["seconds"]
    whole = ask(f"gen {args.new_tokens}")
    tokens = whole["tokens"]
    step_ms = 1e3 * (whole["seconds"] - first) / (args.new_tokens - 1)
    ask("quit")
    proc.wait(timeout=60)
    files = sorted(tmp.glob(Path(prefix).name + "*.json"))
    if not files:
        raise RuntimeError(f"{engine} wrote no ONNX Runtime profile under {tmp}")
    events = json.loads(files[-1].read_text())
    runs = decode_runs(events, args.new_tokens)
    run_ms = statistics.median(r["dur"] / 1e3 for r in runs)
    return {
        "settings": ready["settings"],
        "decode_steps": len(runs),
        "run_ms": run_ms,
        "step_ms": step_ms,
        "host_ms": step_ms - run_ms,
        "ops_ms": op_times(events, runs),
        "row0_tokens": tokens,
    }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one engine: median [min-max] of the step figures, median kernel times."""

    ops = {op for r in results for op in r["ops_ms"]}
    kernels = {op: statistics.median(r["ops_ms"].get(op, 0.0) for r in results) for op in ops}
    return {
        "settings": results[0]["settings"],
        "decode_steps": results[0]["decode_steps"],
        **{k: spread([r[k] for r in results]) for k in ("run_ms", "step_ms", "host_ms")},
        "ops_ms": dict(sorted(kernels.items(), key=lambda kv: -kv[1])),
        "row0_tokens": results[0]["row0_tokens"],
        "rounds": results,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", default="int4")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--spin", choices=("on", "off"), default="on")
    parser.add_argument("--engines", default="tinyllm,onnxruntime-genai")
    parser.add_argument("--out-dir", type=Path, default=OUT, help="model cache (decode_cpu.py)")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from peers import prepare

    import tinyllm

    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engines = args.engines.split(",")
    paths = prepare(args.model, args.precision, engines, args.out_dir)
    rng = np.random.default_rng(0)  # the prompts decode_cpu.py uses
    vocab = tinyllm.open_bundle(args.out_dir / f"{args.model}.tllm").config.vocab_size
    prompts = [prompt_ids(rng, args.prompt_tokens, vocab) for _ in range(8)]
    rows = [prompts[i % 8] for i in range(args.batch)]
    report: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    report["load_average_before"] = list(os.getloadavg())
    runnable = [e for e in engines if not isinstance(paths[e], str)]
    for engine in set(engines) - set(runnable):
        report[engine] = {"skipped": paths[engine]}
    rounds: dict[str, list[dict[str, Any]]] = {e: [] for e in runnable}
    for i in range(args.rounds):  # interleaved, the order rotated each round
        order = runnable[i % len(runnable) :] + runnable[: i % len(runnable)]
        for engine in order:
            with tempfile.TemporaryDirectory() as tmp:
                result = profile_engine(engine, str(paths[engine]), rows, args, Path(tmp))
            rounds[engine].append(result)
    for engine, results in rounds.items():
        report[engine] = summarize(results)
    out = args.out or args.out_dir / f"decode_steps-{args.model}-b{args.batch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    for engine in engines:
        r = report[engine]
        if "skipped" in r:
            print(f"{engine}: skipped ({r['skipped']})")
            continue
        ops = ", ".join(f"{op} {ms:.2f}" for op, ms in list(r["ops_ms"].items())[:8])
        spans = ("run_ms", "step_ms", "host_ms")
        cell = {k: "{median:.2f} [{min:.2f}-{max:.2f}]".format(**r[k]) for k in spans}
        print(
            f"{engine}: step {cell['step_ms']} ms, model_run {cell['run_ms']} ms, outside ONNX "
            f"Runtime {cell['host_ms']} ms ({args.rounds} rounds, {r['decode_steps']} steps each)"
        )
        print(f"  kernels ms/step: {ops}")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
