"""Load test: many requests in-process and over HTTP on loopback; none lost or duplicated.

Every request carries its own id. In-process, each id's future must end exactly once,
with an output or a tinyllm error. Over HTTP (the OpenAI client, ``X-Request-Id``
header echoed back), each id must get exactly one answer: a completion or an
OpenAI-style error with its status. The engine's own counters must add up to the same
totals. Bounded concurrency (like real clients); a full queue is a clear 429, counted.

    .venv/bin/python benchmarks/load_test.py                    # 10,000 each way
    .venv/bin/python benchmarks/load_test.py --requests 500     # what the test runs
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from serving_setup import build
from serving_trace import make_trace

OUT = Path("out/bench")


def in_process(engine: Any, trace: list[Any], concurrency: int) -> dict[str, Any]:
    """Submit every request (at most ``concurrency`` in flight); outcome per id."""
    from tinyllm.errors import TinyLLMError

    outcomes: dict[int, list[str]] = {r.id: [] for r in trace}
    slots = threading.Semaphore(concurrency)
    lock = threading.Lock()

    def done(rid: int, future: Future[Any]) -> None:
        error = future.exception()
        with lock:
            outcomes[rid].append("ok" if error is None else type(error).__name__)
        slots.release()

    start = time.perf_counter()
    for r in trace:
        slots.acquire()
        try:
            future = engine.submit(r.task, r.text, max_new_tokens=r.max_new_tokens)
        except TinyLLMError as e:
            with lock:
                outcomes[r.id].append(type(e).__name__)
            slots.release()
            continue
        future.add_done_callback(lambda f, rid=r.id: done(rid, f))
    for _ in range(concurrency):
        slots.acquire()
    return check(outcomes, time.perf_counter() - start)


async def over_http(url: str, trace: list[Any], concurrency: int) -> dict[str, Any]:
    """The same through the OpenAI client; the server echoes each ``X-Request-Id``."""
    import openai

    # No retries (a retry could duplicate a request); generous timeouts, since on a
    # shared, overloaded machine a 5 s connect timeout fires before the server is slow.
    timeout = openai.Timeout(300.0, connect=60.0)
    client = openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=timeout
    )
    outcomes: dict[int, list[str]] = {r.id: [] for r in trace}
    gate = asyncio.Semaphore(concurrency)

    async def one(r: Any) -> None:
        async with gate:
            sent = f"load-{r.id}"
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=r.task,
                    messages=[{"role": "user", "content": r.text}],
                    max_tokens=r.max_new_tokens,
                    extra_headers={"X-Request-Id": sent},
                )
                echoed = raw.headers.get("x-request-id")
                answer = raw.parse()
                ok = echoed == sent and answer.choices[0].message.content is not None
                outcomes[r.id].append("ok" if ok else f"mismatch {echoed}")
            except openai.APIStatusError as e:
                echoed = e.response.headers.get("x-request-id")
                kind = f"http {e.status_code} {e.code}"
                outcomes[r.id].append(kind if echoed == sent else f"mismatch {echoed}")
            except openai.APIError as e:  # no answer at all: a lost request
                outcomes[r.id].append(f"lost {type(e).__name__}")

    start = time.perf_counter()
    await asyncio.gather(*(one(r) for r in trace))
    await client.close()
    return check(outcomes, time.perf_counter() - start)


def check(outcomes: dict[int, list[str]], seconds: float) -> dict[str, Any]:
    """Counts of each outcome; ``lost`` (no outcome) and ``duplicated`` (several) ids."""
    counts = Counter(o[0] for o in outcomes.values() if len(o) == 1)
    return {
        "requests": len(outcomes),
        "outcomes": dict(counts),
        "lost": sum(1 for o in outcomes.values() if not o or o[0].startswith("lost")),
        "duplicated": sum(1 for o in outcomes.values() if len(o) > 1),
        "mismatched": sum(1 for o in outcomes.values() if o and o[0].startswith("mismatch")),
        "seconds": seconds,
    }


def load(engine: Any, url: str, requests: int, concurrency: int) -> dict[str, Any]:
    """Both load tests on a loaded engine already served at ``url``."""
    names = sorted(engine.tasks)
    trace = make_trace(names, requests, 1000.0, seed=3, mean_words=8, mean_out=6, max_out=16)
    before = engine.stats()
    report = {"in_process": in_process(engine, trace, concurrency)}
    report["http"] = asyncio.run(over_http(url, trace, concurrency))
    after = engine.stats()
    counters = ("submitted", "completed", "failed", "cancelled", "rejected")
    report["engine"] = {k: after[k] - before[k] for k in counters}
    return report


def run(requests: int, concurrency: int, model: str) -> dict[str, Any]:
    """Build a tiny 3-task bundle (cached), serve it, run both load tests."""
    from tinyllm.runtime import Engine
    from tinyllm.runtime.openai_app import BackgroundServer, create_app

    paths = build(model, 3, 256, merged=False)
    engine = Engine.load(paths["shared"], max_batch=8, queue_size=concurrency)
    engine.run(sorted(engine.tasks)[0], "warm up", max_new_tokens=2)
    with BackgroundServer(create_app(engine)) as server:
        report = load(engine, server.url, requests, concurrency)
    engine.close()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--model", default="tiny-llama")
    args = parser.parse_args(argv)
    report = run(args.requests, args.concurrency, args.model)
    for way in ("in_process", "http"):
        r = report[way]
        print(
            f"{way:<11}{r['requests']:>7} requests  {r['seconds']:7.1f} s  "
            f"lost {r['lost']}  duplicated {r['duplicated']}  mismatched {r['mismatched']}  "
            f"outcomes {r['outcomes']}"
        )
    print(f"engine counters: {report['engine']}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "load_test.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
