"""Quantization quality and incremental timing on the multi-task suite.

For a float bundle (default SmolLM2-135M), in one run:
1. int4 RTN, GPTQ on mixed data, multi-task GPTQ (per-task Hessians, element-wise max;
   and ``mlgptq-bal``, every task's Hessian weighted equally) and NNCF (data-free, and
   with AWQ + scale estimation), all with the same calibration
   samples per task; each task's relative output error
   ``||(Q - W) X_t||² / ||W X_t||²`` (mean over the 210 linears, on the task's
   calibration inputs) for every method;
2. the task metric of the float model and of each int4 bundle (exported ONNX engine,
   float activations so only the weights differ; few-shot eval on the first N test
   examples) and the mean relative drop;
3. incremental quantization: a 5-task multi-task GPTQ bundle plus ``--add-task`` of the
   sixth, timed against the full 6-task run of step 1, and checked bit for bit.

Prints a table and writes ``out/bench/quantization.json``. Under CPU contention timings
are noisy: the incremental speedup is a ratio of two runs of the same process.

    nice -n 10 .venv/bin/python benchmarks/quantization.py --source out/smollm2.tllm
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

# Column name -> QuantSettings fields (int4, group 32).
SETTINGS: dict[str, dict[str, Any]] = {
    "rtn": {"method": "rtn"},
    "gptq": {"method": "gptq"},
    "mlgptq": {"method": "mlgptq"},
    "mlgptq-bal": {"method": "mlgptq", "aggregation": "balanced"},
    "nncf": {"method": "nncf"},
    "nncf-awq": {"method": "nncf", "awq": True},
}
METHODS = tuple(SETTINGS)


def evaluate(bundle: Path, names: list[str], limit: int, few_shot: int) -> dict[str, float]:
    """Engine-backend metric per task."""
    from tinyllm import api

    report = api.evaluate(
        bundle, names=names, limit=limit, few_shot=few_shot, backend="engine", progress=False
    )
    return {r.task: r.score for r in report.results}


def cached_hessians(bundle: Any) -> dict[str, Any]:
    """Task -> TaskHessians cached in a calibrated bundle."""
    from tinyllm.compress.hessian import HESSIAN_DIR, TaskHessians

    files = sorted((bundle.path / HESSIAN_DIR).glob("*.safetensors"))
    return {p.stem: TaskHessians.load(p) for p in files}


def quantize_from_cache(
    args: argparse.Namespace, out: Path, method: str, names: list[str], cache: dict[str, Any]
) -> Any:
    """Quantize with Hessians reused from the full run (same fingerprint: same inputs)."""
    from tinyllm import api
    from tinyllm.compress.mlgptq import QuantSettings
    from tinyllm.compress.quantize import Calibration, quantize_bundle

    suite = api.load_tasks()
    cal = Calibration(
        [suite.task(n) for n in names],
        args.calib_samples,
        cached={n: cache[n] for n in names},
    )
    outcome = quantize_bundle(
        api.open_bundle(args.source),
        out / f"{method}.tllm",
        suite,
        QuantSettings(bits=4, group_size=32, **SETTINGS[method]),
        cal,
        overwrite=True,
        progress=False,
    )
    assert not outcome.calibrated  # nothing re-calibrated: the cache matched
    return outcome


def quantize_all(
    args: argparse.Namespace, out: Path, names: list[str], methods: tuple[str, ...] = METHODS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Step 1: the full multi-task run (timed), then the other ``methods`` on its Hessians.

    Returns (method -> run, the full run's cached Hessians by task)."""
    from tinyllm import api

    start = time.perf_counter()
    full, report = api.compress(
        args.source,
        out / "mlgptq.tllm",
        quant="int4-mlgptq",
        names=names,
        calib_samples=args.calib_samples,
        overwrite=True,
        progress=False,
    )
    runs = {"mlgptq": {"bundle": full, "seconds": time.perf_counter() - start}}
    runs["mlgptq"]["report"] = report.to_dict()
    runs["mlgptq"]["errors"] = report.task_errors
    print(f"mlgptq (full, {len(names)} tasks): {runs['mlgptq']['seconds']:.0f}s", flush=True)
    cache = cached_hessians(full)
    for method in methods:
        if method == "mlgptq":
            continue
        start = time.perf_counter()
        outcome = quantize_from_cache(args, out, method, names, cache)
        runs[method] = {
            "bundle": outcome.bundle,
            "seconds": time.perf_counter() - start,
            "errors": outcome.task_errors,
        }
        print(f"{method} (Hessians reused): {runs[method]['seconds']:.0f}s", flush=True)
    return runs, cache


def incremental(
    args: argparse.Namespace, out: Path, names: list[str], full: Any, cache: dict[str, Any]
) -> dict[str, Any]:
    """Step 3: a bundle of all tasks but the last (cached Hessians), then add the last, timed."""
    from safetensors.numpy import load_file

    from tinyllm import api

    first = quantize_from_cache(args, out / "five", "mlgptq", names[:-1], cache).bundle
    start = time.perf_counter()
    added, report = api.compress(
        first.path, out / "added.tllm", add_task=names[-1], overwrite=True, progress=False
    )
    seconds = time.perf_counter() - start
    a, b = load_file(str(added.weights_path)), load_file(str(full.weights_path))
    identical = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    print(f"incremental add: {seconds:.0f}s, identical: {identical}", flush=True)
    return {"seconds": seconds, "identical": identical, "report": report.to_dict()}


def evaluate_all(args: argparse.Namespace, out: Path, names: list[str]) -> dict[str, Any]:
    """Step 2: the float engine and each int4 bundle's engine (float activations)."""
    from tinyllm import api

    metrics: dict[str, Any] = {}
    if not args.skip_fp32:
        fp32 = Path(args.fp32_engine_bundle) if args.fp32_engine_bundle else None
        if fp32 is None:
            fp32 = api.export(args.source, out=out / "fp32.tllm", overwrite=True)[0].path
        metrics["fp32"] = evaluate(fp32, names, args.limit, args.few_shot)
        print(f"eval fp32: {metrics['fp32']}", flush=True)
    for method in args.eval_method:
        exported, _ = api.export(
            out / f"{method}.tllm", out=out / f"{method}-e.tllm", accuracy_level=0, overwrite=True
        )
        metrics[method] = evaluate(exported.path, names, args.limit, args.few_shot)
        print(f"eval {method}: {metrics[method]}", flush=True)
        partial = Path(args.json).with_name("quantization-metrics.json")
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(metrics, indent=2))
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--source", default="out/smollm2.tllm", help="Float bundle.")
    parser.add_argument("--out", default="out/bench/quant", help="Where bundles go.")
    parser.add_argument("--json", default="out/bench/quantization.json", help="The record.")
    parser.add_argument("--tasks", default=None, help="Comma-separated (default: every task).")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="Comma-separated; mlgptq always runs."
    )
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--limit", type=int, default=25, help="Test examples per task.")
    parser.add_argument("--few-shot", type=int, default=3)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--eval-only", action="store_true", help="Evaluate bundles in --out.")
    parser.add_argument("--eval-task", action="append", help="Evaluate this task (repeatable).")
    parser.add_argument(
        "--eval-method", nargs="+", default=None, help="Bundles to eval (default: --methods)."
    )
    parser.add_argument("--skip-fp32", action="store_true", help="Do not evaluate the float model.")
    parser.add_argument(
        "--fp32-engine-bundle", default=None, help="The source already exported (fp32 engine)."
    )
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    if unknown := sorted(set(methods + (args.eval_method or [])) - set(METHODS)):
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    args.methods = ("mlgptq", *(m for m in methods if m != "mlgptq"))
    args.eval_method = args.eval_method or list(args.methods)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (see the module docstring)."""
    from tinyllm import api
    from tinyllm.errors import TinyLLMError

    args = parse_args(argv)
    out, record = Path(args.out), Path(args.json)
    suite = api.load_tasks()
    names = args.tasks.split(",") if args.tasks else [t.name for t in suite.tasks]
    try:
        suite.select(names)
    except TinyLLMError as e:  # an unknown name, named
        raise SystemExit(f"--tasks: {e}") from None
    if len(names) < 2:
        raise SystemExit("--tasks: give at least two (the last one is added incrementally)")
    eval_names = args.eval_task or names
    if args.eval_only:
        print(json.dumps(evaluate_all(args, out, eval_names), indent=2))
        return
    runs, cache = quantize_all(args, out, names, args.methods)
    inc = incremental(args, out, names, runs["mlgptq"]["bundle"], cache)
    # Each method's report: ||(Q - W) X_t||² / ||W X_t||² on the same cached Hessians
    # (AWQ's weights mapped back to the float space first).
    errors = {m: r["errors"] for m, r in runs.items()}
    partial = {
        "seconds": {m: r["seconds"] for m, r in runs.items()},
        "incremental": inc,
        "task_errors": errors,
    }
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(partial, indent=2, default=str))
    metrics = {} if args.skip_eval else evaluate_all(args, out, eval_names)
    result = summarize(eval_names, runs, inc, errors, metrics, args)
    record.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {record}")


def summarize(
    names: list[str],
    runs: dict[str, Any],
    inc: dict[str, Any],
    errors: dict[str, dict[str, float]],
    metrics: dict[str, dict[str, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Print the tables; return the JSON record."""
    print(f"\nper-task relative output error (calibration inputs, {args.calib_samples}/task)")
    print(f"{'task':<12}" + "".join(f"{m:>11}" for m in errors))
    for t in errors["mlgptq"]:
        print(f"{t:<12}" + "".join(f"{errors[m][t]:>11.2e}" for m in errors))
    drops: dict[str, float] = {}
    if "fp32" in metrics:
        cols = [c for c in ("fp32", *METHODS) if c in metrics]
        print(f"\nmetric ({args.few_shot}-shot, first {args.limit} test examples, engine)")
        print(f"{'task':<12}" + "".join(f"{c:>11}" for c in cols))
        for t in names:
            print(f"{t:<12}" + "".join(f"{metrics[c][t]:>11.3f}" for c in cols))
        for m in cols[1:]:
            rel = [
                (metrics["fp32"][t] - metrics[m][t]) / metrics["fp32"][t]
                for t in names
                if metrics["fp32"][t] > 0
            ]
            drops[m] = float(np.mean(rel)) if rel else float("nan")
        print("mean relative drop " + "  ".join(f"{m} {100 * d:+.1f}%" for m, d in drops.items()))
    full_s = runs["mlgptq"]["seconds"]
    print(
        f"\nincremental: full {len(errors['mlgptq'])}-task mlgptq {full_s:.0f}s, "
        f"add 1 task {inc['seconds']:.0f}s "
        f"({full_s / inc['seconds']:.1f}x faster), identical weights: {inc['identical']}"
    )
    return {
        "args": vars(args),
        "seconds": {m: r["seconds"] for m, r in runs.items()},
        "reports": {m: r["report"] for m, r in runs.items() if "report" in r},
        "task_errors": errors,
        "metrics": metrics,
        "mean_relative_drop": drops,
        "incremental": inc,
    }


if __name__ == "__main__":
    main()
