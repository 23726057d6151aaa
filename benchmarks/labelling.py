"""Labelling throughput against a live `tinyllm serve` teacher, at several concurrencies.

Starts `tinyllm serve BUNDLE` (by default a tiny-qwen2 bundle serving the built-in
sentiment task, built here), then labels the same N inputs with
`tinyllm.distill.labelling.label_task` (k=1, one input per request) at each concurrency,
each into a fresh folder, and prints labelled examples per second and the ratio to
concurrency 1. Peers (the concurrencies) run in one process against one server, in
interleaved rounds. ``--bundle B --task T`` serves your bundle instead and labels the
first N test examples of the built-in task T (a real teacher's work per request):

    python benchmarks/labelling.py --inputs 96 --concurrency 1,4,16 --rounds 2
    python benchmarks/labelling.py --bundle out/demo/student-int4-onnx.tllm --task booking \
        --inputs 32 --max-batch 16
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from task_examples import first_examples


def served_bundle(folder: Path) -> Path:
    """tiny-qwen2 serving the built-in sentiment task (no adapter), exported for onnx-cpu."""
    import tinyllm

    base = tinyllm.import_model("tiny-qwen2", folder / "base.tllm").path
    suite = tinyllm.api.load_tasks()
    child = tinyllm.api.add_tasks(base, folder / "tasks.tllm", [suite.task("sentiment")], {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", folder / "served.tllm", max_seq_len=256)
    return Path(bundle.path)


@contextmanager
def live_server(bundle: Path, max_batch: int = 16) -> Iterator[str]:
    """`tinyllm serve BUNDLE` in a subprocess; yields its ``/v1`` base URL; SIGINT at exit.
    The server's engine uses every CPU this process may use (its default threads)."""
    import signal

    cli = Path(sys.executable).parent / "tinyllm"
    proc = subprocess.Popen(
        [str(cli), "serve", str(bundle), "--port", "0", "--max-batch", str(max_batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # uvicorn prints the bound port once it listens
            lines.append(line)
            if "Uvicorn running on " in line:
                break
        else:
            raise RuntimeError("tinyllm serve exited before listening:\n" + "".join(lines))
        yield line.split("Uvicorn running on ")[1].split()[0] + "/v1"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def task_inputs(task: str, n: int) -> list[str]:
    """The first ``n`` test examples of a built-in task."""
    return [e.input for e in first_examples([task], n)[task]]


def inputs(n: int) -> list[str]:
    """``n`` distinct short reviews."""
    words = ["great", "awful", "fine", "broken", "lovely", "slow", "clean", "noisy"]
    return [f"review {i}: the room was {words[i % 8]} and {words[(i * 3) % 8]}" for i in range(n)]


def label_rate(
    url: str, texts: list[str], concurrency: int, folder: Path, task_name: str = "sentiment"
) -> float:
    """Labelled examples per second of one run at ``concurrency`` (a fresh journal)."""
    from tinyllm import api
    from tinyllm.distill.labelling import label_task
    from tinyllm.distill.teacher_specs import teacher_from_spec

    task = api.load_tasks().task(task_name)
    teacher = teacher_from_spec(f"tinyllm:{url}")
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    stats = label_task(
        task, texts, teacher, folder, k=1, batch_size=1, temperature=0.0,
        concurrency=concurrency, progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if stats.labelled != len(texts):
        raise RuntimeError(f"labelled {stats.labelled} of {len(texts)} inputs")
    return len(texts) / seconds


def measure(
    url: str, n: int, levels: list[int], rounds: int, work: Path, task: str | None = None
) -> dict[int, float]:
    """Best examples/s per concurrency over ``rounds`` interleaved rounds (after a warm-up);
    ``task``: label that built-in task's test examples (default: reviews, sentiment)."""
    texts = task_inputs(task, n) if task else inputs(n)
    name = task or "sentiment"
    label_rate(url, texts[:8], max(levels), work / "warmup", name)
    best = {c: 0.0 for c in levels}
    for _ in range(rounds):
        for c in levels:
            best[c] = max(best[c], label_rate(url, texts, c, work / f"c{c}", name))
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, default=None, help="A served bundle (default: built)."
    )
    parser.add_argument("--inputs", type=int, default=96)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=16, help="The server's --max-batch.")
    parser.add_argument("--task", default=None, help="A built-in task of --bundle to label.")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--work", type=Path, default=None, help="Keep the bundle and journals here (default: tmp)."
    )
    args = parser.parse_args(argv)
    if args.task and not args.bundle:
        parser.error("--task labels a task of your --bundle; give --bundle too")
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="tinyllm-label-bench-") as tmp:
        work = args.work or Path(tmp)
        bundle = args.bundle or served_bundle(work)
        with live_server(bundle, args.max_batch) as url:
            rates = measure(url, args.inputs, levels, args.rounds, work, args.task)
    print(f"{'concurrency':>12}{'examples/s':>12}{'vs 1':>8}")
    for c, rate in rates.items():
        print(f"{c:>12}{rate:>12.1f}{rate / rates[levels[0]]:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps({str(c): r for c, r in rates.items()}, indent=2))


if __name__ == "__main__":
    main()
