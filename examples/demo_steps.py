"""The cache and progress display behind examples/demo.py.

Each pipeline step writes one bundle and records, beside it, the key it was made from
(its parameters and the parent bundle's content hash) and the child's hash. A later run
reuses the bundle only when the key is the same and the bundle on disk is the one that
was recorded; otherwise the step runs again. A parent made again has a new hash, so every
step after it runs again too: a stale result is never reused silently.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tinyllm


@dataclass
class StepResult:
    """What a step produced: its bundle (None for a result-only step) and its report."""

    name: str
    bundle: tinyllm.Bundle | None
    report: dict[str, Any]
    seconds: float  # wall time of the run that made it
    cpu_seconds: float  # CPU time of that run (all threads; less sensitive to a busy machine)
    cached: bool


class StepCache:
    """Steps whose outputs live under ``folder`` as ``NAME.tllm`` plus ``NAME.step.json``."""

    def __init__(self, folder: Path, reuse: bool = True) -> None:
        self.folder = folder
        self.reuse = reuse
        folder.mkdir(parents=True, exist_ok=True)

    def bundle_path(self, name: str) -> Path:
        """Where step ``name`` writes its bundle."""
        return self.folder / f"{name}.tllm"

    def run(
        self,
        name: str,
        key: dict[str, Any],
        make: Callable[[Path], tuple[tinyllm.Bundle | None, dict[str, Any]]],
    ) -> StepResult:
        """Reuse step ``name`` if it was made from ``key``, else run ``make(bundle_path)``.

        ``make`` returns the bundle it wrote (or None) and a JSON-ready report.
        """
        record_path = self.folder / f"{name}.step.json"
        cached = self._cached(name, key, record_path)
        if cached is not None:
            return cached
        record_path.unlink(missing_ok=True)  # never leave a record of a half-made step
        start, cpu = time.perf_counter(), time.process_time()
        bundle, report = make(self.bundle_path(name))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        record = {
            "key": key,
            "bundle_hash": bundle.hash if bundle is not None else None,
            "report": report,
            "seconds": seconds,
            "cpu_seconds": cpu,
        }
        record_path.write_text(json.dumps(record, indent=1, sort_keys=True))
        return StepResult(name, bundle, report, seconds, cpu, cached=False)

    def _cached(self, name: str, key: dict[str, Any], record_path: Path) -> StepResult | None:
        """The recorded result, if reusing is allowed, the key matches and the bundle is intact."""
        if not self.reuse or not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text())
            fields = ("bundle_hash", "report", "seconds", "cpu_seconds")
            if record["key"] != json.loads(json.dumps(key)) or not all(f in record for f in fields):
                return None
        except (ValueError, TypeError, KeyError):  # unreadable: an older demo's, or damaged
            return None
        bundle = None
        if record["bundle_hash"] is not None:
            try:
                bundle = tinyllm.Bundle.open(self.bundle_path(name), verify="size")
            except tinyllm.TinyLLMError:
                return None
            if bundle.hash != record["bundle_hash"]:
                return None
        return StepResult(
            name, bundle, record["report"], record["seconds"], record["cpu_seconds"], cached=True
        )


@contextmanager
def ticker(desc: str) -> Iterator[None]:
    """A progress line with the elapsed time, for steps that draw no progress bar."""
    from tqdm import tqdm

    done = threading.Event()
    with tqdm(desc=desc, bar_format="{desc}: {elapsed}", leave=False) as bar:

        def tick() -> None:
            while not done.wait(1.0):
                bar.refresh()

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
