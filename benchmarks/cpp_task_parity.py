"""Task answers of the C++ runtime (libtinyllm) against the Python engine, same bundle.

Serves the first ``--inputs`` test examples of every task of a bundle through
``tinyllm.runtime.Engine.run`` and through libtinyllm's ``tinyllm_run_tasks`` (one request
at a time on both, greedy, constrained), and counts the requests whose generated token ids
and parsed values are identical. Needs ``make cpp`` (libtinyllm in build/cpp).

    .venv/bin/python benchmarks/cpp_task_parity.py out/demo/student-int4-onnx.tllm --inputs 50

Prints a table per task and writes JSON (``--json``, default out/bench/cpp-task-parity.json).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from task_examples import first_examples


def inputs(tasks: list[str], count: int) -> list[tuple[str, str]]:
    """(task, text) of the first ``count`` test examples of each built-in task."""
    return [(t, e.input) for t, examples in first_examples(tasks, count).items() for e in examples]


def compare(bundle: Path, engine: str | None, count: int, threads: int) -> dict[str, Any]:
    """Per task: requests, identical token ids, identical values, and the first mismatch."""
    from tinyllm.runtime import Engine
    from tinyllm.runtime.native import NativeEngine, load_library
    from tinyllm.runtime.nativetasks import NativeTasks

    python = Engine.load(bundle, engine=engine, threads=threads, max_batch=1)
    native = NativeEngine(load_library(), bundle, engine=engine, max_batch=1, threads=threads)
    tasks = NativeTasks(native)
    served = sorted(set(python.tasks) & set(tasks.names()))
    per_task: dict[str, dict[str, Any]] = {
        t: {"requests": 0, "tokens": 0, "values": 0, "mismatch": None} for t in served
    }
    try:
        for task, text in inputs(served, count):
            py = python.run(task, text)
            (cpp,) = tasks.run([(task, text)])
            row = per_task[task]
            row["requests"] += 1
            row["tokens"] += tuple(py.token_ids) == tuple(cpp.token_ids)
            row["values"] += py.value == cpp.value
            if py.value != cpp.value and row["mismatch"] is None:
                row["mismatch"] = {"input": text, "python": py.text, "cpp": cpp.text}
    finally:
        python.close()
        native.close()
    return {"bundle": str(bundle), "engine": engine, "threads": threads, "tasks": per_task}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--engine", default=None, help="Engine name (default: the CPU one).")
    parser.add_argument("--inputs", type=int, default=50, help="Test examples per task.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("out/bench/cpp-task-parity.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = compare(args.bundle, args.engine, args.inputs, args.threads)
    print(f"{'task':<12}{'requests':>10}{'same tokens':>13}{'same value':>12}")
    for task, row in result["tasks"].items():
        print(f"{task:<12}{row['requests']:>10}{row['tokens']:>13}{row['values']:>12}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
