"""Latency of requests that call tools, against peers in the same run (one engine, CPU).

Peers, on the same inputs, interleaved (each input runs every peer before the next one):

- ``tools``: ``engine.run(task, text)``: the call is decoded (constrained to the tool's
  schema), the tool runs in-process, the answer comes back;
- ``call``: the same engine and request with ``execute_tools=False``: the same decoding,
  no tool run (the difference is the tool's own cost and its hand-off);
- ``stepwise``: ``call`` on a second engine of the bundle loaded with
  ``fast_forward=False``: the text the call constraint forces is decoded one step a token
  instead of one verify step per forced run (the same tokens; the difference is the
  fast-forward's saving);
- ``pipeline``: the teacher pipeline's tool step alone: the arguments from the request's
  text (``Tool.from_text``) and ``call_tool``, no model (a floor for any tool answer);
- ``plain`` (with ``--plain-bundle``): a student of the same task without tools, which
  writes the answer itself (the issue's "the same student without tools").

Reported: p50 and p95 per peer, the ratios ``tools / call``, ``tools / plain`` and
``call / stepwise``, the tool call's own share of the ``tools`` latency
(``ToolCall.seconds`` over it), and the engine runs (prefills, decode and verify steps) a
request takes on each engine peer: a count that does not depend on the machine's load.

    .venv/bin/python benchmarks/tool_latency.py --bundle out/student-tools.tllm \\
        --suite examples/tools-suite.yaml --task arithmetic [--plain-bundle out/student.tllm]
    .venv/bin/python benchmarks/tool_latency.py --quick    # tiny random model, ~1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from task_examples import first_examples

OUT = Path("out/bench")
# A peer answers one input; it returns (seconds, the tool call's own seconds or 0).
Peer = Callable[[str], tuple[float, float]]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def measure(peers: dict[str, Peer], inputs: list[str], repeats: int = 1) -> dict[str, Any]:
    """Per peer: p50/p95 seconds and the tool's median share; one warm-up input first."""
    for peer in peers.values():
        peer(inputs[0])
    seconds: dict[str, list[float]] = {name: [] for name in peers}
    shares: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(repeats):
        for text in inputs:
            for name, peer in peers.items():
                total, tool = peer(text)
                seconds[name].append(total)
                shares[name].append(tool / total if total > 0 else 0.0)
    return {
        name: {
            "n": len(values),
            "p50_s": percentile(values, 0.5),
            "p95_s": percentile(values, 0.95),
            "tool_share_p50": percentile(shares[name], 0.5),
        }
        for name, values in seconds.items()
    }


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """``tools`` over each other peer, and ``call`` over ``stepwise``, at p50 and p95."""
    out: dict[str, float] = {}
    pairs = [("tools", name) for name in results if name != "tools"]
    pairs.append(("call", "stepwise"))
    for a, b in pairs:
        if a in results and b in results:
            for q in ("p50_s", "p95_s"):
                out[f"{a}_x_{b}_{q[:3]}"] = results[a][q] / max(results[b][q], 1e-12)
    return out


def counting(engine: Any, peer: Peer, runs: list[int]) -> Peer:
    """``peer``, appending to ``runs`` the engine runs each of its requests took (the engine
    serves one request at a time, so the difference of its counter is that request's)."""

    def run(text: str) -> tuple[float, float]:
        before = engine.stats()["engine_runs"]
        out = peer(text)
        runs.append(engine.stats()["engine_runs"] - before)
        return out

    return run


def stepwise_peer(engine: Any, task: str, calls: list[tuple[int, ...]]) -> Peer:
    """The call alone on an engine loaded with ``fast_forward=False`` (its token ids
    appended to ``calls``)."""

    def run(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        out = engine.run(task, text, execute_tools=False)
        total = time.perf_counter() - start
        calls.append(out.token_ids)
        return total, 0.0

    return run


def engine_peers(
    engine: Any, task: str, tools: list[Any], calls: list[tuple[int, ...]] | None = None
) -> dict[str, Peer]:
    """The ``tools``, ``call`` and ``pipeline`` peers of one engine's tool task; ``call``
    appends each call's token ids to ``calls``."""
    from tinyllm.tools import ToolError, call_tool

    def with_tools(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        out = engine.run(task, text)
        total = time.perf_counter() - start
        return total, out.tool_call.seconds if out.tool_call is not None else 0.0

    def call_only(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        out = engine.run(task, text, execute_tools=False)
        total = time.perf_counter() - start
        if calls is not None:
            calls.append(out.token_ids)
        return total, 0.0

    def pipeline(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        for tool in tools:  # as the teacher pipeline: the first tool whose call works
            if tool.from_text is None:
                continue
            try:
                call_tool(tool, tool.from_text(text))
                break
            except ToolError:
                continue
        total = time.perf_counter() - start
        return total, total

    return {"tools": with_tools, "call": call_only, "pipeline": pipeline}


def plain_peer(engine: Any, task: str) -> Peer:
    """A task without tools on another engine: the model writes the answer."""

    def run(text: str) -> tuple[float, float]:
        start = time.perf_counter()
        engine.run(task, text)
        return time.perf_counter() - start, 0.0

    return run


def quick_bundle(folder: Path) -> tuple[Path, Any, Any]:
    """tiny-llama (random weights) serving the built-in arithmetic task with the calculator."""
    import tinyllm
    from tinyllm.tasks import ToolUse

    base = tinyllm.import_model("tiny-llama", folder / "tiny.tllm").path
    suite = tinyllm.api.load_tasks()
    task = dataclasses.replace(suite.task("arithmetic"), tools=ToolUse(["calculator"], "answer"))
    child = tinyllm.api.add_tasks(base, folder / "tools.tllm", [task])
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", folder / "served.tllm", max_seq_len=256)
    return bundle.path, suite, task


def report(
    results: dict[str, Any], calls: dict[str, list[tuple[int, ...]]]
) -> tuple[dict[str, float], str]:
    """Print the table and the ratios; the ratios and how many calls ``call`` and
    ``stepwise`` wrote alike ("k of n")."""
    print(f"{'peer':<10}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'tool share':>12}{'runs p50':>10}")
    for name, r in results.items():
        print(
            f"{name:<10}{r['n']:>5}{1e3 * r['p50_s']:>10.1f}{1e3 * r['p95_s']:>10.1f}"
            f"{100 * r['tool_share_p50']:>11.1f}%{r.get('runs_p50', float('nan')):>10.1f}"
        )
    summary = ratios(results)
    print(json.dumps(summary, indent=1))
    same = f"{sum(a == b for a, b in zip(*calls.values(), strict=True))} of {len(calls['call'])}"
    print(f"call and stepwise wrote the same tokens on {same} requests")
    return summary, same


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny random model, built here")
    parser.add_argument("--bundle", default=None, help="an exported bundle with a tool task")
    parser.add_argument("--suite", default=None, help="suite file of the task's test inputs")
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--plain-bundle", default=None, help="the task's student without tools")
    parser.add_argument("--requests", type=int, default=None, help="inputs (quick: 12, else 50)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--json", type=Path, default=None, help="default out/bench/tool_latency[-quick].json"
    )
    args = parser.parse_args(argv)
    if not args.quick and not args.bundle:
        parser.error("give --bundle (and --suite), or --quick")
    import tinyllm
    from tinyllm.runtime import Engine
    from tinyllm.toolbox import get_tool

    n = args.requests or (12 if args.quick else 50)
    with tempfile.TemporaryDirectory(prefix="tool-latency-") as tmp:
        if args.quick:
            bundle, suite, task = quick_bundle(Path(tmp))
        else:
            bundle = Path(args.bundle)
            suite = tinyllm.api.load_tasks(args.suite or "builtin")
            task = suite.task(args.task)
        if task.tools is None:
            raise SystemExit(f"task {args.task!r} of the suite names no tools")
        inputs = [ex.input for ex in first_examples([task.name], n, suite=suite)[task.name]]
        engine = Engine.load(bundle, max_batch=1)
        stepwise = Engine.load(bundle, max_batch=1, fast_forward=False)
        calls: dict[str, list[tuple[int, ...]]] = {"call": [], "stepwise": []}
        tools = [get_tool(t) for t in task.tools.names]
        peers = engine_peers(engine, task.name, tools, calls["call"])
        peers["stepwise"] = stepwise_peer(stepwise, task.name, calls["stepwise"])
        runs: dict[str, list[int]] = {name: [] for name in ("tools", "call", "stepwise")}
        for name in runs:
            peers[name] = counting(
                stepwise if name == "stepwise" else engine, peers[name], runs[name]
            )
        plain = None
        if args.plain_bundle:
            plain = Engine.load(args.plain_bundle, max_batch=1)
            peers["plain"] = plain_peer(plain, task.name)
        start = time.perf_counter()
        results = measure(peers, inputs, args.repeats)
        for name, counts in runs.items():  # the first request of each was the warm-up
            results[name]["runs_p50"] = percentile([float(c) for c in counts[1:]], 0.5)
            results[name]["runs_mean"] = sum(counts[1:]) / len(counts[1:])
        forced = engine.stats()["speculation"]
        engine.close()
        stepwise.close()
        if plain is not None:
            plain.close()
    summary, same = report(results, calls)
    out = args.json or OUT / f"tool_latency{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "bundle": "quick (tiny-llama, random weights)" if args.quick else str(args.bundle),
        "task": task.name,
        "inputs": len(inputs),
        "results": results,
        "ratios": summary,
        "forced": {k: v for k, v in forced.items() if k.startswith("forced")},
        "identical_calls": same,
        "seconds": time.perf_counter() - start,
        "caveat": "2 shared CPU cores (other jobs running): ratios, not absolute speeds",
    }
    out.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
