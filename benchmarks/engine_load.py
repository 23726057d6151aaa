"""What integrity costs at load: ``Engine.load`` with sizes only, and with sha256 on a cold
and on a warm hash cache.

Each mode loads the engine ``--repeats`` times in this process (the files stay in the OS
page cache after the first read, so "cold" means a cold *hash* cache, not a cold disk) and
reports the median seconds. ``cold`` deletes the hash cache before each load; ``warm``
fills it once first. Files changed less than ``RACY_S`` seconds ago are never remembered,
so run it on a bundle written a few seconds before.

    .venv/bin/python benchmarks/engine_load.py out/smollm2-int4.tllm --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("size", "cold", "warm")


def load_seconds(bundle: Path, mode: str, repeats: int) -> list[float]:
    """Seconds per ``Engine.load`` of ``bundle`` in ``mode`` (one of :data:`MODES`)."""
    from tinyllm.runtime import Engine

    cache = Path(os.environ["TINYLLM_HASH_CACHE"])
    kwargs: dict[str, Any] = {"verify": "size"} if mode == "size" else {}
    if mode == "warm":
        Engine.load(bundle, **kwargs).close()
    times = []
    for _ in range(repeats):
        if mode == "cold":
            cache.unlink(missing_ok=True)
        start = time.perf_counter()
        engine = Engine.load(bundle, **kwargs)
        times.append(time.perf_counter() - start)
        engine.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated subset.")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    folder = tempfile.mkdtemp(prefix="tinyllm-load-")
    os.environ["TINYLLM_HASH_CACHE"] = str(Path(folder) / "hashes.json")
    report: dict[str, dict[str, float]] = {}
    for bundle in args.bundles:
        report[str(bundle)] = {
            mode: statistics.median(load_seconds(bundle, mode, args.repeats)) for mode in modes
        }
        print(f"{bundle}: " + ", ".join(f"{m} {s:.3f}s" for m, s in report[str(bundle)].items()))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
