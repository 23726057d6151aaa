"""Worked example: SmolLM2-135M-Instruct routing to tools vs SmolLM2 alone (3-shot).

The "prototype" pattern: an LLM decides which tool to call, Python tools compute. This
script measures, per task, the metric of SmolLM2 alone (3-shot, greedy) and of the
pipeline (SmolLM2 routes to calculator / date_parser / booking_extractor / none; when no
tool gives a verified answer, SmolLM2 answers 3-shot), and how often the LLM's first pick
was the right tool. Run (a few minutes per task on a 2-core CPU):

    tinyllm import smollm2-135m -o out/smollm2.tllm     # once
    tinyllm data prepare
    python examples/tool_pipeline.py --limit 40 --json out/tool_pipeline.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyllm import api
from tinyllm.distill.pipeline import builtin_pipeline
from tinyllm.metrics import score
from tinyllm.suite import load_split, prepare

RIGHT_TOOL = {"arithmetic": "calculator", "dates": "date_parser", "booking": "booking_extractor"}


def measure(task_name: str, limit: int, llm: str) -> dict[str, object]:
    """Metric of the LLM alone and of the pipeline on the first ``limit`` test examples."""
    suite = api.load_tasks("builtin")
    task = suite.task(task_name)
    prepare(task)
    examples = load_split(suite, task, "test", limit)
    inputs, refs = [e.input for e in examples], [e.output for e in examples]
    pipeline = builtin_pipeline(llm, suite, few_shot=3)
    start = time.perf_counter()
    alone = [c[0] for c in pipeline.llm.label(task, inputs)]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    piped = [c[0] for c in pipeline.label(task, inputs)]
    piped_s = time.perf_counter() - start
    right = RIGHT_TOOL.get(task_name, "none")
    first_picks = [t.steps[0].option for t in pipeline.trace]
    return {
        "task": task_name,
        "metric": task.metric,
        "n": len(examples),
        "llm_alone": score(task.metric, alone, refs),
        "pipeline": score(task.metric, piped, refs),
        "right_first_pick": sum(p == right for p in first_picks) / len(first_picks),
        "answered_by_tool": sum(t.answered_by != "llm" for t in pipeline.trace) / len(inputs),
        "first_picks": {p: first_picks.count(p) for p in sorted(set(first_picks))},
        "seconds_llm_alone": alone_s,
        "seconds_pipeline": piped_s,
    }


def main() -> None:
    """Measure each task and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm", default="out/smollm2.tllm", help="SmolLM2 bundle")
    parser.add_argument("--tasks", default="arithmetic,dates,booking,intent")
    parser.add_argument("--limit", type=int, default=40, help="test examples per task")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    rows = []
    print(
        f"{'task':<12}{'metric':<13}{'n':>4}{'alone':>8}{'pipeline':>10}{'right tool':>12}"
        f"{'by tool':>9}"
    )
    for name in args.tasks.split(","):
        r = measure(name, args.limit, args.llm)
        rows.append(r)
        print(
            f"{name:<12}{r['metric']:<13}{r['n']:>4}{r['llm_alone']:>8.3f}{r['pipeline']:>10.3f}"
            f"{100 * r['right_first_pick']:>11.0f}%{100 * r['answered_by_tool']:>8.0f}%",
            flush=True,
        )
        if args.json:  # after every task, so a long run keeps what it measured
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
