"""A soak of the HTTP server: mixed task requests for many minutes, with streams the
client drops halfway, bad requests, and a task removed and added back while it serves.

The server is its own process (this script with ``--serve``): the bundle's engine behind
the OpenAI-compatible app, plus a thread that removes a task with a LoRA adapter and adds
it back every ``--churn-s`` seconds. Client threads here send, at random: a task request,
a streamed one read to the end, a streamed one dropped after its first chunk (a client
disconnect), a request for the churned task (404 while it is out), and a bad request (an
unknown model). Every ``--sample-s`` seconds the server process's RSS and open file
descriptors are read from /proc.

Accounting: every request the clients sent must be in the server's
``tinyllm_requests_total`` exactly once at the end (none lost, none counted twice), and
every request must have ended with an expected outcome. RSS: the least-squares slope over
the second half of the run, in MiB per minute (issue #18's target: below 1) and per hour;
file descriptors: the last sample against the first after warm-up. Per ``--interval-s``
interval: the requests that ended in it, their outcomes, the unexpected ones, and the
latency p50/p99 of the requests answered in full (status 200, streams read to the end;
not the dropped streams).

    .venv/bin/python benchmarks/http_soak.py --minutes 30          # the documented soak
    .venv/bin/python benchmarks/http_soak.py --minutes 1 --clients 4

Prints a table and writes JSON (``--json``, default out/bench/http-soak.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

TASKS = ("sentiment", "booking", "rewrite")
CHURNED = "intent"  # removed and added back while serving, with a LoRA adapter
TEXTS = (
    "the room was lovely and the staff were kind",
    "book a table for two in Rome on 2025-06-01",
    "hey can u send me the report asap",
    "cold food and a rude waiter",
    "wake me up at seven tomorrow",
)
SLOPE_LIMIT = 1.0  # MiB per minute
ANSWERED = ("task 200", "stream 200", "churned 200")  # in full: their latency is reported


def build_bundle(folder: Path) -> Path:
    """tiny-qwen2 serving three built-in tasks, exported with spare LoRA slots."""
    import tinyllm

    base = tinyllm.import_model("tiny-qwen2", folder / "base.tllm").path
    suite = tinyllm.api.load_tasks()
    child = tinyllm.api.add_tasks(base, folder / "tasks.tllm", [suite.task(t) for t in TASKS], {})
    bundle, _ = tinyllm.export(
        child.path, "onnx-cpu", folder / "soak.tllm", max_seq_len=256, lora_slots=3, lora_rank=4
    )
    return Path(bundle.path)


def serve(bundle: Path, churn_s: float) -> None:
    """The server process: the app on a free port, and the task churn thread."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from serving_setup import random_adapter

    import tinyllm
    from tinyllm.errors import EngineClosedError
    from tinyllm.runtime import Engine
    from tinyllm.runtime.openai_app import create_app
    from tinyllm.runtime.webserver import run_server

    engine = Engine.load(bundle, max_batch=4, verify="size")
    spec = tinyllm.api.load_tasks().task(CHURNED)
    adapter = random_adapter(tinyllm.open_bundle(bundle), seed=7, rank=4)
    engine.add_task(spec, adapter)
    app = create_app(engine, close_engine=True)

    def churn() -> None:
        while True:
            time.sleep(churn_s)
            try:
                if CHURNED in engine.tasks:
                    engine.remove_task(CHURNED)
                    time.sleep(churn_s / 2)
                engine.add_task(spec, adapter)
            except EngineClosedError:  # the server is shutting down
                return
            except Exception:  # a server error: the soak reports it and fails; churn goes on
                traceback.print_exc()

    threading.Thread(target=churn, daemon=True).start()
    run_server(app, "127.0.0.1", 0, "info")


def slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        raise ValueError("a slope needs at least two samples; run longer or sample faster")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        raise ValueError("the samples share one time")
    return 60.0 * sum((t - mt) * (r - mr) for t, r in samples) / var


def proc_figures(pid: int) -> tuple[float, int]:
    """(RSS MiB, open file descriptors) of a process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss / 1024, len(os.listdir(f"/proc/{pid}/fd"))


Record = tuple[float, str, float]  # (seconds since the start when it ended, outcome, latency)


def client(url: str, seed: int, start: float, until: float, records: list[Record],
           lock: threading.Lock) -> None:  # fmt: skip
    """Send mixed requests until ``until``; record each one's outcome and latency."""
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as http:
        while time.monotonic() < until:
            kind = rng.choice(["task", "task", "stream", "drop", "churned", "bad"])
            model = {"churned": CHURNED, "bad": "no-such-task"}.get(kind, rng.choice(TASKS))
            body: dict[str, Any] = {
                "model": model,
                "messages": [{"role": "user", "content": rng.choice(TEXTS)}],
                "max_tokens": 12,
                "stream": kind in ("stream", "drop"),
            }
            begin = time.monotonic()
            try:
                if body["stream"]:
                    with http.stream("POST", "/chat/completions", json=body) as r:
                        chunks = 0
                        for line in r.iter_lines():
                            chunks += line.startswith("data:")
                            if kind == "drop" and chunks:
                                break  # leave mid-stream: the server sees a disconnect
                        outcome = f"{kind} {r.status_code}"
                else:
                    outcome = f"{kind} {http.post('/chat/completions', json=body).status_code}"
            except Exception as e:  # any failure is an outcome: no request goes unrecorded
                outcome = f"{kind} error {type(e).__name__}"
            end = time.monotonic()
            with lock:
                records.append((end - start, outcome, end - begin))


def expected(outcome: str) -> bool:
    """Outcomes a healthy server gives: answers, drops, 404 for the churned task while it
    is out and for the unknown model."""
    kind, status = outcome.split(" ", 1)
    return status == "200" or (kind in ("churned", "bad") and status == "404")


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of a non-empty list."""
    if not values:
        raise ValueError("a percentile of no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def intervals(records: list[Record], length_s: float) -> list[dict[str, Any]]:
    """Per ``length_s`` interval (by end time): requests, outcomes, unexpected ones and the
    latency p50/p99 in ms of those answered in full (None when there were none)."""
    if length_s <= 0:
        raise ValueError(f"the interval must be positive, got {length_s}")
    buckets: dict[int, list[Record]] = {}
    for record in records:
        buckets.setdefault(int(record[0] // length_s), []).append(record)
    rows = []
    for index in range(max(buckets, default=-1) + 1):
        got = buckets.get(index, [])
        answered = [1000 * lat for _, outcome, lat in got if outcome in ANSWERED]
        rows.append(
            {
                "start_s": index * length_s,
                "requests": len(got),
                "outcomes": dict(sorted(Counter(outcome for _, outcome, _ in got).items())),
                "unexpected": sum(not expected(outcome) for _, outcome, _ in got),
                "p50_ms": percentile(answered, 50) if answered else None,
                "p99_ms": percentile(answered, 99) if answered else None,
            }
        )
    return rows


def server_counts(url: str) -> tuple[int, int]:
    """(the sum of the server's ``tinyllm_requests_total``, requests in flight)."""
    import httpx

    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    total = sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tinyllm_requests_total{")
    )
    flight = next(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("tinyllm_requests_in_flight ")
    )
    return total, flight


def settled_total(url: str, wait_s: float = 60.0) -> int:
    """The server's request total once nothing is in flight: the handlers of streams the
    clients dropped last may still be running when the clients are done (a fixed pause
    can read the total before they are counted). After ``wait_s``, the total as it is."""
    deadline = time.monotonic() + wait_s
    total, flight = server_counts(url)
    while flight and time.monotonic() < deadline:
        time.sleep(0.1)
        total, flight = server_counts(url)
    return total


def soak(
    bundle: Path,
    minutes: float,
    clients: int,
    churn_s: float,
    sample_s: float,
    interval_s: float = 60.0,
) -> Any:
    """Run the server and the clients; the report."""
    cmd = [sys.executable, __file__, "--serve", str(bundle), "--churn-s", str(churn_s)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert server.stdout is not None
        for line in server.stdout:
            lines.append(line)
            if "Uvicorn running on " in line:
                break
        else:
            raise RuntimeError("the soak server exited before listening:\n" + "".join(lines))
        url = line.split("Uvicorn running on ")[1].split()[0] + "/v1"
        errors: list[str] = []  # the server's error lines and tracebacks, kept for the report

        def drain() -> None:
            assert server.stdout is not None
            keep = 0
            for text in server.stdout:
                if "Traceback" in text or "ERROR" in text or "Exception" in text:
                    keep = 40  # the line and the traceback after it
                if text.startswith("INFO:"):
                    continue  # uvicorn's access lines, interleaved with a traceback
                if keep and len(errors) < 2000:
                    errors.append(text.rstrip("\n"))
                keep = max(0, keep - 1)

        threading.Thread(target=drain, daemon=True).start()
        start = time.monotonic()
        until = start + 60 * minutes
        records: list[Record] = []
        lock = threading.Lock()
        threads = [
            threading.Thread(target=client, args=(url, i, start, until, records, lock))
            for i in range(clients)
        ]
        for t in threads:
            t.start()
        samples: list[tuple[float, float, int]] = []
        while time.monotonic() < until:
            samples.append((time.monotonic() - start, *proc_figures(server.pid)))
            time.sleep(min(sample_s, max(0.0, until - time.monotonic())))
        for t in threads:
            t.join()
        samples.append((time.monotonic() - start, *proc_figures(server.pid)))
        total = settled_total(url)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    outcomes = Counter(outcome for _, outcome, _ in records)
    sent = len(records)
    half = [(t, r) for t, r, _ in samples if t >= samples[-1][0] / 2]
    after_warmup = [s for s in samples if s[0] >= min(60.0, samples[-1][0] / 4)] or samples
    report = {
        "settings": {
            "bundle": str(bundle), "minutes": minutes, "clients": clients,
            "churn_s": churn_s, "sample_s": sample_s, "interval_s": interval_s,
        },
        "sent": sent,
        "served": total,
        "lost_or_duplicated": total - sent,
        "outcomes": dict(sorted(outcomes.items())),
        "unexpected": {k: v for k, v in outcomes.items() if not expected(k)},
        "rss_mib": {"first": samples[0][1], "last": samples[-1][1],
                    "max": max(r for _, r, _ in samples)},
        "rss_slope_mib_per_min": slope_mib_per_min(half),
        "rss_slope_mib_per_hour": 60 * slope_mib_per_min(half),
        "fds": {"after_warmup": after_warmup[0][2], "last": samples[-1][2]},
        "server_errors": errors,
        "intervals": intervals(records, interval_s),
        "samples": samples,
    }  # fmt: skip
    report["passed"] = (
        report["lost_or_duplicated"] == 0
        and not report["unexpected"]
        and not report["server_errors"]
        and report["rss_slope_mib_per_min"] < SLOPE_LIMIT
        and report["fds"]["last"] <= report["fds"]["after_warmup"] + 2
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", type=Path, default=None, help="Default: built here.")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--churn-s", type=float, default=5.0)
    parser.add_argument("--sample-s", type=float, default=5.0, help="Seconds between RSS reads.")
    parser.add_argument("--interval-s", type=float, default=60.0, help="Latency table interval.")
    parser.add_argument("--json", type=Path, default=Path("out/bench/http-soak.json"))
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.serve:
        serve(args.serve, args.churn_s)
        return
    with tempfile.TemporaryDirectory(prefix="tinyllm-soak-") as tmp:
        bundle = args.bundle or build_bundle(Path(tmp))
        r = soak(bundle, args.minutes, args.clients, args.churn_s, args.sample_s, args.interval_s)
    print(f"{'from s':>8}{'requests':>10}{'unexpected':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for row in r["intervals"]:
        p50, p99 = (f"{row[k]:.0f}" if row[k] is not None else "-" for k in ("p50_ms", "p99_ms"))
        print(
            f"{row['start_s']:>8.0f}{row['requests']:>10}{row['unexpected']:>12}{p50:>10}{p99:>10}"
        )
    print(f"{'requests sent':<28}{r['sent']:>10}")
    print(f"{'counted by the server':<28}{r['served']:>10}")
    for outcome, count in r["outcomes"].items():
        print(f"  {outcome:<26}{count:>10}")
    rss = r["rss_mib"]
    figures = f"{rss['first']:>6.0f} / {rss['last']:.0f} / {rss['max']:.0f}"
    print(f"{'RSS MiB first/last/max':<28}{figures}")
    slope = (
        f"{r['rss_slope_mib_per_min']:>+10.3f} MiB/min ({r['rss_slope_mib_per_hour']:+.1f} MiB/h)"
    )
    print(f"{'RSS slope, 2nd half':<28}{slope}")
    print(f"{'fds after warm-up / last':<28}{r['fds']['after_warmup']:>6} / {r['fds']['last']}")
    if r["server_errors"]:
        print("the server's error lines (all in the JSON):")
        print("\n".join(r["server_errors"][:40]))
    print("passed" if r["passed"] else "FAILED")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=2))
    sys.exit(0 if r["passed"] else 1)


if __name__ == "__main__":
    main()
