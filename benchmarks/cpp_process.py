"""A process that answers one task request: the C++ runtime's ``tinyllm-run`` against a
Python process running ``Engine.load`` + ``Engine.run``, from process start to the answer,
and the process's peak RSS.

Each run is a fresh process (spawned, waited with ``os.wait4`` for its peak RSS), with the
same engine, threads, rows and context on both sides; rounds alternate which side runs
first, after one warm-up run of each (so both read the files from the page cache). The
report gives the median and [min-max] of the start-to-answer seconds and of the peak RSS,
and their C++/Python ratios. Needs ``make cpp``.

    .venv/bin/python benchmarks/cpp_process.py out/demo/student-int4-onnx.tllm \\
        --task intent --text "Wake me up at 7 tomorrow morning" --rounds 7 --threads 2

Prints a table and writes JSON (``--json``, default out/bench/cpp-process.json).
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

from decode_cpu import spread

PYTHON_RUN = """
import sys
from tinyllm.runtime import Engine
bundle, task, text, threads, rows, seq = sys.argv[1:7]
engine = Engine.load(bundle, threads=int(threads), max_batch=int(rows), max_seq_len=int(seq))
out = engine.run(task, text)
print(out.value if out.valid else f"INVALID: {out.error} | {out.text}", flush=True)
engine.close()
"""


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The command line of each side."""
    from tinyllm.runtime.native import tool_path

    common = [str(args.threads), str(args.max_batch), str(args.max_seq_len)]
    return {
        "python": [
            sys.executable, "-c", PYTHON_RUN, str(args.bundle), args.task, args.text, *common
        ],
        "cpp": [
            str(tool_path("tinyllm-run")), str(args.bundle), "--task", args.task, args.text,
            "--threads", str(args.threads), "--max-batch", str(args.max_batch),
            "--max-seq-len", str(args.max_seq_len),
        ],
    }  # fmt: skip


def run_once(command: list[str]) -> dict[str, Any]:
    """Seconds from spawn to exit, peak RSS (MiB) and the answer of one process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {proc.returncode}: {err.decode()[-2000:]}")
    return {
        "seconds": seconds,
        "rss_mib": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "answer": out.decode().strip(),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, then ``rounds`` alternating rounds; the answers must agree."""
    cmds = commands(args)
    answers = {side: run_once(cmd)["answer"] for side, cmd in cmds.items()}
    if answers["python"] != answers["cpp"]:
        raise RuntimeError(f"the runtimes answered differently: {answers}")
    runs: dict[str, list[dict[str, Any]]] = {"python": [], "cpp": []}
    for r in range(args.rounds):
        order = ["python", "cpp"] if r % 2 == 0 else ["cpp", "python"]
        for side in order:
            runs[side].append(run_once(cmds[side]))
    ratios = {
        key: spread([c[key] / p[key] for c, p in zip(runs["cpp"], runs["python"], strict=True)])
        for key in ("seconds", "rss_mib")
    }
    return {
        "settings": {
            "bundle": str(args.bundle), "task": args.task, "text": args.text,
            "threads": args.threads, "max_batch": args.max_batch,
            "max_seq_len": args.max_seq_len, "rounds": args.rounds,
            "load_average": os.getloadavg()[0],
        },
        "answer": answers["cpp"],
        "sides": {
            side: {key: spread([r[key] for r in rs]) for key in ("seconds", "rss_mib")}
            for side, rs in runs.items()
        },
        "cpp_over_python": ratios,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--task", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--json", type=Path, default=Path("out/bench/cpp-process.json"))
    args = parser.parse_args(argv)
    result = measure(args)
    print(f"answer: {result['answer']}")
    print(f"{'':<10}{'start to answer s':>20}{'peak RSS MiB':>16}")
    for side, row in result["sides"].items():
        s, m = row["seconds"], row["rss_mib"]
        print(
            f"{side:<10}{s['median']:>8.3f} [{s['min']:.3f}-{s['max']:.3f}]"
            f"{m['median']:>9.1f} [{m['min']:.0f}-{m['max']:.0f}]"
        )
    r = result["cpp_over_python"]
    print(
        f"C++/Python: start to answer {r['seconds']['median']:.2f}x "
        f"[{r['seconds']['min']:.2f}-{r['seconds']['max']:.2f}], "
        f"peak RSS {r['rss_mib']['median']:.2f}x "
        f"[{r['rss_mib']['min']:.2f}-{r['rss_mib']['max']:.2f}]"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
