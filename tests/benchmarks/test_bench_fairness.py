"""benchmarks/decode_cpu.py measures one engine at a time: every other worker is stopped."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# A worker that answers the harness's protocol (decode_worker.py's) and does nothing else.
IDLE_WORKER = """#!/bin/bash
echo '{"ready": true, "settings": {}, "load_s": 0.0, "base_rss": 0}'
while read -r cmd n; do
  case $cmd in
    gen) echo '{"seconds": 0.01, "tokens": [7]}';;
    quit) echo '{"peak_rss": 0, "rss": 0}'; exit 0;;
  esac
done
"""


def state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_only_the_measured_engine_runs(tmp_path: Path, bench: Path) -> None:
    """While one engine generates, the others are stopped (an idle llama.cpp worker kept
    polling on a core and slowed the ONNX Runtime engines about 3x); closing resumes them."""
    import decode_cpu

    fake = tmp_path / "fake-python"
    fake.write_text(IDLE_WORKER)
    fake.chmod(0o755)
    workers = {
        name: decode_cpu.Worker({"engine": name}, str(fake), dict(os.environ), tmp_path / name)
        for name in ("a", "b", "c")
    }
    try:
        for measured in workers:
            assert decode_cpu.alone(workers, measured)(2) == pytest.approx(0.01)
            states = {name: state(w.proc.pid) for name, w in workers.items()}
            assert states[measured] != "T", states
            assert all(states[n] == "T" for n in workers if n != measured), states
    finally:
        memory = {name: w.close() for name, w in workers.items()}
    assert all(m["peak_rss"] == 0 for m in memory.values())
    assert all(w.proc.returncode == 0 for w in workers.values())
