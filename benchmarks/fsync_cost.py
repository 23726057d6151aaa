"""What tinyllm's durable writes cost: the same work with ``os.fsync`` real and with it
replaced by a no-op, in one process, in interleaved rounds.

Two workloads, both of which fsync by design (docs/reliability.md):

- ``label``: labelling the built-in sentiment task's first N train inputs with the oracle
  teacher (instant answers, so the journal's appends are the work): one journal append
  and fsync per batch of ``--batch-size`` inputs, then the stats and output files;
- ``bundle``: committing a child bundle (``add_tasks`` on tiny-qwen2): every staged file
  and folder fsynced, the folder swapped in, its parent fsynced.

Rounds alternate which mode runs first; the report gives median and [min-max] seconds
per mode and the ratio fsync / no fsync per round. The figures depend on the disk and
file system (a laptop SSD, a network volume and a VM's virtual disk differ by orders of
magnitude), so run it where you deploy.

    .venv/bin/python benchmarks/fsync_cost.py --rounds 5

Prints a table and writes JSON (``--json``, default out/bench/fsync-cost.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from decode_cpu import spread
from task_examples import first_examples


@contextmanager
def fsync_off() -> Iterator[None]:
    """``os.fsync`` does nothing inside (every tinyllm durable write goes through it)."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


def label_work(folder: Path, inputs: int, batch_size: int) -> Callable[[Path], None]:
    """Labelling ``inputs`` sentiment examples with the oracle teacher into a folder."""
    import tinyllm
    from tinyllm.distill.labelling import label_task
    from tinyllm.distill.teacher_specs import teacher_from_spec

    suite = tinyllm.api.load_tasks()
    task = suite.task("sentiment")
    texts = [e.input for e in first_examples(["sentiment"], inputs, "train", suite)["sentiment"]]
    teacher = teacher_from_spec("oracle", suite)

    def run(out: Path) -> None:
        stats = label_task(
            task, texts, teacher, out, k=1, batch_size=batch_size, temperature=0.0,
            progress=False,
        )  # fmt: skip
        if stats.labelled != len(texts):
            raise RuntimeError(f"labelled {stats.labelled} of {len(texts)}")

    return run


def bundle_work(folder: Path) -> Callable[[Path], None]:
    """Committing a child bundle of tiny-qwen2 with one task."""
    import tinyllm

    base = tinyllm.import_model("tiny-qwen2", folder / "base.tllm").path
    task = tinyllm.api.load_tasks().task("sentiment")

    def run(out: Path) -> None:
        tinyllm.api.add_tasks(base, out / "child.tllm", [task], {})

    return run


def measure(work: Callable[[Path], None], rounds: int, scratch: Path) -> dict[str, Any]:
    """Seconds per mode over ``rounds`` rounds (alternating order, after a warm-up)."""
    times: dict[str, list[float]] = {"fsync": [], "no_fsync": []}

    def once(mode: str) -> float:
        out = scratch / f"{mode}-{len(times[mode])}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        start = time.perf_counter()
        if mode == "fsync":
            work(out)
        else:
            with fsync_off():
                work(out)
        seconds = time.perf_counter() - start
        shutil.rmtree(out, ignore_errors=True)
        return seconds

    once("fsync"), once("no_fsync")  # warm-up: imports, caches
    for r in range(rounds):
        for mode in ("fsync", "no_fsync") if r % 2 == 0 else ("no_fsync", "fsync"):
            times[mode].append(once(mode))
    ratios = [a / b for a, b in zip(times["fsync"], times["no_fsync"], strict=True)]

    return {
        "seconds": {mode: spread(v) for mode, v in times.items()},
        "fsync_over_no_fsync": spread(ratios),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inputs", type=int, default=512, help="Inputs labelled.")
    parser.add_argument("--batch-size", type=int, default=16, help="Inputs per journal append.")
    parser.add_argument("--dir", type=Path, default=None, help="Where to write (default: tmp).")
    parser.add_argument("--json", type=Path, default=Path("out/bench/fsync-cost.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="tinyllm-fsync-", dir=args.dir) as tmp:
        scratch = Path(tmp)
        works = {
            "label": label_work(scratch, args.inputs, args.batch_size),
            "bundle": bundle_work(scratch),
        }
        results = {name: measure(work, args.rounds, scratch / name) for name, work in works.items()}
    report = {
        "settings": {
            "rounds": args.rounds, "inputs": args.inputs, "batch_size": args.batch_size,
            "dir": str(args.dir or tempfile.gettempdir()),
        },
        "results": results,
    }  # fmt: skip
    print(f"{'workload':<10}{'fsync s':>22}{'no fsync s':>22}{'ratio':>20}")
    for name, r in results.items():
        s, n, x = r["seconds"]["fsync"], r["seconds"]["no_fsync"], r["fsync_over_no_fsync"]
        print(
            f"{name:<10}{s['median']:>10.3f} [{s['min']:.3f}-{s['max']:.3f}]"
            f"{n['median']:>10.3f} [{n['min']:.3f}-{n['max']:.3f}]"
            f"{x['median']:>8.2f}x [{x['min']:.2f}-{x['max']:.2f}]"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
