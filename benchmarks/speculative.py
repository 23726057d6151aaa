"""Speculative decoding with prompt-lookup drafts against plain decoding, same engine.

Builds SmolLM2-135M-Instruct (the embedded real model) with the built-in suite's booking
(JSON extraction) and rewrite (text) tasks, exports it to ``onnx-cpu`` at fp32 (int4 and int8
engines refuse to speculate: their outputs changed),
and serves requests from those tasks' test splits (with the task's few-shot examples
from its train split, as evaluation prompts them) one at a time, on two engines loaded
from the same files: one with ``speculate=0`` (plain), one with ``speculate=8`` (up to 8
drafted tokens per step; speculation is off by default).
Rounds alternate which goes first. Per (precision, task) it reports output tokens per
second (over whole requests, and over decoding only: after the first token), the
speed-up of speculation, the acceptance rate of the drafted tokens and whether every
request gave identical tokens. JSON goes to ``--out`` (default
``out/bench/speculative.json``), a Markdown table to stdout.

    nice -n 19 .venv/bin/python benchmarks/speculative.py --requests 24 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from task_examples import few_shot_examples, first_examples

TASKS = ("booking", "rewrite")
PRECISIONS = ("fp32",)  # int4/int8 onnx-cpu engines refuse to speculate (outputs change)


def build(folder: Path, force: bool) -> Path:
    """SmolLM2 with the booking and rewrite tasks, with an fp32 onnx-cpu engine."""
    import tinyllm

    bundle = folder / "smollm2-spec.tllm"
    if bundle.is_dir() and not force:
        return bundle
    base = tinyllm.import_model("smollm2-135m", folder / "smollm2.tllm", overwrite=True)
    suite = tinyllm.api.load_tasks()
    tasks = [suite.task(n) for n in TASKS]
    child = tinyllm.api.add_tasks(
        base.path, folder / "smollm2-tasks.tllm", tasks, {}, overwrite=True
    )
    tinyllm.export(child.path, "onnx-cpu", bundle, max_seq_len=1024, overwrite=True)
    return bundle


def requests(count: int) -> list[tuple[str, str, list[Any]]]:
    """(task, input, shots) from each task's test split, ``count`` per task."""
    few = few_shot_examples(TASKS)
    return [
        (name, e.input, few[name])
        for name, examples in first_examples(TASKS, count).items()
        for e in examples
    ]


def serve(engine: Any, work: list[tuple[str, str, list[Any]]]) -> list[dict[str, Any]]:
    """Each request alone (single stream): tokens, seconds, seconds to the first token."""
    results = []
    for task, text, shots in work:
        start = time.perf_counter()
        out = engine.run(task, text, shots=shots)
        results.append(
            {
                "task": task,
                "tokens": list(out.token_ids),
                "seconds": time.perf_counter() - start,
                "ttft_s": out.ttft_s,
            }
        )
    return results


def rates(runs: list[list[dict[str, Any]]], task: str) -> dict[str, float]:
    """Median over rounds of output tok/s (whole requests, and decoding after the first
    token), for one task's requests."""
    whole, decode = [], []
    for run in runs:
        rows = [r for r in run if r["task"] == task]
        tokens = sum(len(r["tokens"]) for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        after_first = sum(r["seconds"] - r["ttft_s"] for r in rows)
        whole.append(tokens / seconds)
        decode.append((tokens - len(rows)) / after_first)
    return {
        "tok_s": statistics.median(whole),
        "tok_s_range": [min(whole), max(whole)],
        "decode_tok_s": statistics.median(decode),
        "decode_tok_s_range": [min(decode), max(decode)],
    }


def compare(bundle: Path, precision: str, work: list[Any], rounds: int, threads: int) -> Any:
    """Plain and speculative engines over ``rounds`` alternating rounds of ``work``."""
    from tinyllm.runtime import Engine

    name = f"onnx-cpu-{precision}"
    engines = {
        "plain": Engine.load(bundle, engine=name, threads=threads, max_batch=1, speculate=0),
        "spec": Engine.load(bundle, engine=name, threads=threads, max_batch=1, speculate=8),
    }
    for engine in engines.values():
        serve(engine, work[:2])  # warm up: sessions, prefix caches, JSON token table
    before = engines["spec"].stats()["speculation"]
    runs: dict[str, list[list[dict[str, Any]]]] = {"plain": [], "spec": []}
    for r in range(rounds):
        for mode in ("plain", "spec") if r % 2 == 0 else ("spec", "plain"):
            runs[mode].append(serve(engines[mode], work))
    after = engines["spec"].stats()["speculation"]
    for engine in engines.values():
        engine.close()
    identical = all(
        a["tokens"] == b["tokens"]
        for p, s in zip(runs["plain"], runs["spec"], strict=True)
        for a, b in zip(p, s, strict=True)
    )
    result: dict[str, Any] = {"identical": identical, "tasks": {}}
    for task in TASKS:
        plain, spec = rates(runs["plain"], task), rates(runs["spec"], task)
        result["tasks"][task] = {
            "plain": plain,
            "spec": spec,
            "speedup": spec["tok_s"] / plain["tok_s"],
            "decode_speedup": spec["decode_tok_s"] / plain["decode_tok_s"],
            "output_tokens": sum(len(r["tokens"]) for r in runs["plain"][0] if r["task"] == task),
        }
    drafted = after["drafted"] - before["drafted"]
    result["acceptance"] = (after["accepted"] - before["accepted"]) / drafted if drafted else 0.0
    result["verify_steps"] = after["steps"] - before["steps"]
    result["drafted"] = drafted
    return result


def table(results: dict[str, Any]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| precision | task | plain tok/s | spec tok/s | speed-up | decode speed-up "
        "| acceptance | identical |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for precision, res in results.items():
        for task, row in res["tasks"].items():
            lines.append(
                f"| {precision} | {task} | {row['plain']['tok_s']:.1f} | "
                f"{row['spec']['tok_s']:.1f} | {row['speedup']:.2f}x | "
                f"{row['decode_speedup']:.2f}x | {res['acceptance']:.0%} | "
                f"{'yes' if res['identical'] else 'NO'} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=24, help="test inputs per task")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, action="append")
    parser.add_argument("--folder", type=Path, default=Path("out/bench/speculative"))
    parser.add_argument("--out", type=Path, default=Path("out/bench/speculative.json"))
    parser.add_argument("--rebuild", action="store_true", help="build the bundle again")
    parser.add_argument("--bundle", type=Path, help="a bundle built before (skips the build)")
    args = parser.parse_args(argv)
    if args.bundle is None:
        args.folder.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or build(args.folder, args.rebuild)
    work = requests(args.requests)
    results = {
        p: compare(bundle, p, work, args.rounds, args.threads) for p in args.precision or PRECISIONS
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "requests_per_task": args.requests,
        "rounds": args.rounds,
        "threads": args.threads,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
