"""What ``tinyllm profile``'s recorder costs: the latency of the same workload with the
phase recorder on (the op profiler off, as in the profile's passes 1 and 2) against an
unprofiled run, on the engine of a bundle.

Rounds are interleaved and alternate which runs first (AB, BA, ...), after one warm-up
pass. Per round: the median end-to-end latency of each run and their ratio. The report
gives the overhead's median and [min, max] over the rounds, and the recorder's own time
as a share of the loop's busy time (its direct measure). The target (issue #17): within
3%.

    .venv/bin/python benchmarks/profile_overhead.py out/smollm2-int4.tllm --rounds 7 \\
        --requests 16 --concurrency 4 --prompt-len 64 --new-tokens 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def measure(
    bundle: Path,
    rounds: int,
    requests: int,
    concurrency: int,
    prompt_len: int | None,
    new_tokens: int | None,
    threads: int | None,
) -> dict[str, Any]:
    """The A/B figures (:func:`tinyllm.runtime.profilestats.ab_overhead`), plus the
    recorder's own share of the busy time in the recorded rounds."""
    import tinyllm
    from tinyllm.runtime.engine import pick_engine
    from tinyllm.runtime.loadgen import Load, drive
    from tinyllm.runtime.profile import (
        ProfileOptions,
        load_engine,
        measure_overhead,
        run_pass,
        workload_items,
    )
    from tinyllm.runtime.servingdefaults import read_defaults

    opened = tinyllm.open_bundle(bundle)
    options = ProfileOptions(requests=requests, prompt_len=prompt_len, new_tokens=new_tokens)
    items, described, specs = workload_items(options, opened)
    entry = pick_engine(opened, None, "cpu")
    settings = read_defaults(opened.path / entry.path).with_given(threads=threads)
    engine = load_engine(opened, entry.path.rstrip("/").split("/")[-1], settings, items, specs)
    load = Load(concurrency=concurrency)
    try:
        drive(engine, items, load)  # warm-up
        result = measure_overhead(engine, items, load, rounds)
        recorded = run_pass(engine, items, load)
    finally:
        engine.close()
    totals = recorded.recorder.totals()
    busy = sum(v for k, v in totals.items() if k not in ("idle", "profiler"))
    result["recorder_share_of_busy"] = totals["profiler"] / busy if busy > 0 else 0.0
    result["workload"] = {**described, "requests": len(items), "load": load.describe()}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    r = measure(
        args.bundle,
        args.rounds,
        args.requests,
        args.concurrency,
        args.prompt_len,
        args.new_tokens,
        args.threads,
    )
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(
        f"median e2e latency: {r['median_latency_ms_unprofiled']:.1f} ms unprofiled, "
        f"{r['median_latency_ms_recorded']:.1f} ms recorded"
    )
    print(
        f"overhead: {r['overhead']:+.2%} median [{r['overhead_min']:+.2%} to "
        f"{r['overhead_max']:+.2%}] over {r['rounds']} interleaved rounds"
    )
    print("per round: " + ", ".join(f"{x:+.2%}" for x in r["per_round"]))
    print(f"recorder's own time: {r['recorder_share_of_busy']:.3%} of the loop's busy time")


if __name__ == "__main__":
    main()
