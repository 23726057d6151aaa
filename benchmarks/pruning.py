"""Pruning quality: the parent against its pruned child, unhealed and healed, per task.

Prunes the parent to ``--ratio`` of its parameters and heals it with ``--heal-steps`` of
KD (with ``--unhealed`` also once without healing), exports each to an fp32 onnx-cpu
engine, and scores them and the parent with the 3-shot evaluation on the first
``--limit`` test examples of every built-in task. Prints a table and writes JSON to
out/bench/pruning.json.

    .venv/bin/tinyllm import smollm2-135m -o out/smollm2.tllm
    .venv/bin/python benchmarks/pruning.py out/smollm2.tllm --ratio 0.8 --limit 40
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import tinyllm

OUT = Path("out/bench")


def engine_bundle(bundle: Path, work: Path) -> Path:
    """``bundle`` itself if it has an fp32 CPU engine, else an exported copy under work/."""
    opened = tinyllm.open_bundle(bundle)
    if "onnx-cpu-fp32" in opened.manifest.engines:
        return bundle
    exported, _ = tinyllm.export(
        bundle, "onnx-cpu", work / f"{bundle.stem}-cpu.tllm", overwrite=True
    )
    return exported.path


def scores(bundle: Path, args: argparse.Namespace) -> dict[str, Any]:
    """task -> {metric, score, n, invalid} with the few-shot engine evaluation.

    The same as ``tinyllm eval --backend engine`` (api.evaluate), with the engine's
    thread count set (one thread is much faster than two on a machine that is shared).
    """
    from tinyllm.evaluation import evaluate_task
    from tinyllm.runtime import Engine
    from tinyllm.runtime.generator import EngineGenerator
    from tinyllm.suite import prepare

    suite = tinyllm.api.load_tasks()
    generator = EngineGenerator(Engine.load(bundle, max_batch=8, threads=args.threads))
    out = {}
    for task in suite.select(None):
        prepare(task)
        r = evaluate_task(
            generator, suite, task, limit=args.limit, few_shot=args.few_shot, progress=False
        )
        out[r.task] = {"metric": r.metric, "score": r.score, "n": r.n, "invalid": r.invalid_rate}
        print(f"{bundle.name:<24}{r.task:<12}{r.score:.3f}", flush=True)
    return out


def relative_drop(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, float]:
    """Per task (parent - child) / parent, for tasks where the parent scores above 0."""
    return {
        task: (p["score"] - child[task]["score"]) / p["score"]
        for task, p in parent.items()
        if p["score"] > 0
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    """The printed comparison: one row per task, one column per model."""
    names = list(results)
    parent = results[names[0]]
    head = f"{'task':<12}{'metric':<13}" + "".join(f"{n:>12}" for n in names) + f"{'n':>5}"
    lines = [head, "-" * len(head)]
    for task, p in parent.items():
        row = f"{task:<12}{p['metric']:<13}"
        row += "".join(f"{results[n][task]['score']:>12.3f}" for n in names)
        lines.append(row + f"{p['n']:>5}")
    for n in names[1:]:
        drops = relative_drop(parent, results[n])
        mean = sum(drops.values()) / max(len(drops), 1)
        lines.append(f"mean relative drop of {n}: {100 * mean:.1f}% over {len(drops)} tasks")
        before = sum(p["score"] for p in parent.values())
        after = sum(results[n][task]["score"] for task in parent)
        lines.append(f"relative drop of {n}'s mean score: {100 * (before - after) / before:.1f}%")
    return "\n".join(lines)


def main() -> None:
    """Parse options, prune, export, evaluate, print and save."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parent", type=Path, help="the parent bundle (e.g. out/smollm2.tllm)")
    parser.add_argument("--ratio", type=float, default=0.8)
    parser.add_argument("--limit", type=int, default=40, help="test examples per task")
    parser.add_argument("--few-shot", type=int, default=3)
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--heal-steps", type=int, default=60)
    parser.add_argument("--heal-batch-size", type=int, default=2)
    parser.add_argument("--heal-lr", type=float, default=1e-5)
    parser.add_argument("--work", type=Path, default=Path("out/pruning"))
    parser.add_argument(
        "--unhealed", action="store_true", help="also prune without healing (a second run)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch and engine threads")
    parser.add_argument(
        "--parent-scores", type=Path, default=None, help="reuse the parent's scores (JSON)"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    children: dict[str, Path] = {}
    reports: dict[str, Any] = {}
    variants = [("pruned", 0)] if args.unhealed else []
    for label, steps in [*variants, ("healed", args.heal_steps)]:
        child, report = tinyllm.api.prune(
            args.parent,
            args.work / f"{label}.tllm",
            args.ratio,
            calib_samples=args.calib_samples,
            heal_steps=steps,
            heal_batch_size=args.heal_batch_size,
            heal_lr=args.heal_lr,
            overwrite=True,
        )
        print(report.format(), flush=True)
        children[label] = engine_bundle(child.path, args.work)
        reports[label] = report.to_dict()
    if args.parent_scores is not None:  # same engine, same examples: the same scores
        results = {"parent": json.loads(args.parent_scores.read_text())["results"]["parent"]}
    else:
        results = {"parent": scores(engine_bundle(args.parent, args.work), args)}
    for label, path in children.items():
        results[label] = scores(path, args)
    text = table(results)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    record = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "results": results,
        "prune": reports,
        "seconds": time.perf_counter() - start,
    }
    (OUT / "pruning.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {OUT / 'pruning.json'} ({record['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
