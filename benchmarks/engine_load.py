"""What integrity costs at load: ``Engine.load`` with sizes only, and with sha256 on a cold
and on a warm hash cache.

``size`` is what load did before sha256 checks (plus the engine.json check against the
graph, which reads only the session's inputs and metadata). Each round loads the engine
once per mode, the modes interleaved so that a busy machine slows them alike, and the
report gives the median and the minimum over ``--repeats`` rounds, in wall seconds and in
CPU seconds of this process (less sensitive to other processes). The files stay in the OS
page cache after the first read, so "cold" means a cold *hash* cache, not a cold disk:
``cold`` deletes the hash cache before its load; ``warm`` loads with it filled. Files
changed less than ``RACY_S`` seconds before are never remembered, so run it on a bundle
written a few seconds earlier.

    .venv/bin/python benchmarks/engine_load.py out/smollm2-int4.tllm --repeats 7
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


def load_once(bundle: Path, mode: str, cache: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``Engine.load`` of ``bundle`` in ``mode``."""
    from tinyllm.runtime import Engine

    if mode == "cold":
        cache.unlink(missing_ok=True)
    kwargs: dict[str, Any] = {"verify": "size"} if mode == "size" else {}
    wall, cpu = time.perf_counter(), time.process_time()
    engine = Engine.load(bundle, **kwargs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    engine.close()
    return wall, cpu


def measure(bundle: Path, modes: list[str], repeats: int, cache: Path) -> dict[str, Any]:
    """Median and minimum wall and CPU seconds per mode, the modes interleaved."""
    from tinyllm.runtime import Engine

    Engine.load(bundle).close()  # page cache and hash cache warm before the first round
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for _ in range(repeats):
        for mode in modes:
            times[mode].append(load_once(bundle, mode, cache))
            if mode == "cold":  # leave the cache warm for the next mode
                Engine.load(bundle).close()
    return {
        mode: {
            "wall_median": statistics.median(w for w, _ in runs),
            "wall_min": min(w for w, _ in runs),
            "cpu_median": statistics.median(c for _, c in runs),
            "cpu_min": min(c for _, c in runs),
        }
        for mode, runs in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", default=",".join(MODES), help="Comma-separated subset.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the report here.")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    if unknown := sorted(set(modes) - set(MODES)):
        parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    cache = Path(tempfile.mkdtemp(prefix="tinyllm-load-")) / "hashes.json"
    os.environ["TINYLLM_HASH_CACHE"] = str(cache)
    report = {str(b): measure(b, modes, args.repeats, cache) for b in args.bundles}
    for bundle, rows in report.items():
        for mode, t in rows.items():
            print(
                f"{bundle:<32}{mode:<6} wall median {t['wall_median']:.3f}s "
                f"min {t['wall_min']:.3f}s  cpu median {t['cpu_median']:.3f}s "
                f"min {t['cpu_min']:.3f}s"
            )
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
