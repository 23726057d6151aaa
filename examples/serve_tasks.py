"""Serve two built-in tasks of an exported bundle from one engine and print the answers.

Usage: python examples/serve_tasks.py BUNDLE OUT
(BUNDLE has an onnx-cpu engine; OUT is the child bundle that records the two tasks.)
"""

from __future__ import annotations

import sys

import tinyllm

REQUESTS = [
    ("sentiment", "The room was spotless and the staff were lovely."),
    ("sentiment", "Cold food, a rude waiter, and we waited an hour."),
    ("intent", "Wake me up at 7 tomorrow morning"),
    ("intent", "Play some jazz in the kitchen"),
]


def main(bundle: str, out: str) -> None:
    """Record the tasks in a child bundle, then serve the requests together."""
    tasks = tinyllm.api.load_tasks().select(["sentiment", "intent"])
    served = tinyllm.api.add_tasks(bundle, out, tasks, overwrite=True)
    with tinyllm.Engine.load(served.path, max_batch=4) as engine:
        futures = [engine.submit(task, text) for task, text in REQUESTS]
        for (task, text), future in zip(REQUESTS, futures, strict=True):
            result = future.result()
            print(f"{task:<10} {text!r} -> {result.value!r} ({1000 * result.latency_s:.0f} ms)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
