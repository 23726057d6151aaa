"""The reliability benchmarks (docs/reliability.md): http_soak.py, the HTTP soak (its
slope fit, interval table, settled totals and client outcomes), and fsync_cost.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def test_http_soak_benchmark_end_to_end(bench: Path, tmp_path: Path) -> None:
    """http_soak.py's main, the 30-second version of the HTTP soak (docs/reliability.md has
    the 30-minute run):
    every request counted once by the server, only expected outcomes, the churned task both
    served and refused, no fd leak; the slope and outcome checks fail on a leak and on a
    server error. (RSS still grows while warming up over a minute: its slope is judged
    on the long run.)"""
    import http_soak

    out = tmp_path / "soak.json"
    with pytest.raises(SystemExit) as exited:
        http_soak.main(
            [
                "--minutes", "0.5", "--clients", "3", "--churn-s", "2", "--sample-s", "1",
                "--interval-s", "6", "--json", str(out),
            ]
        )  # fmt: skip
    r = json.loads(out.read_text())
    slope_ok = r["rss_slope_mib_per_min"] < http_soak.SLOPE_LIMIT
    assert r["passed"] is slope_ok and exited.value.code == (0 if slope_ok else 1)
    assert r["sent"] > 20 and r["lost_or_duplicated"] == 0 and r["unexpected"] == {}, r
    kinds = {k.split()[0] for k in r["outcomes"]}
    assert kinds == {"task", "stream", "drop", "churned", "bad"}
    assert r["outcomes"].get("bad 404", 0) > 0 and len(r["samples"]) >= 5
    assert r["fds"]["last"] <= r["fds"]["after_warmup"] + 2
    assert r["rss_slope_mib_per_hour"] == pytest.approx(60 * r["rss_slope_mib_per_min"])
    rows = r["intervals"]
    assert len(rows) >= 4 and sum(row["requests"] for row in rows) == r["sent"]
    assert sum(sum(row["outcomes"].values()) for row in rows) == r["sent"]
    assert all(row["unexpected"] == 0 for row in rows) and r["server_errors"] == []
    timed = [row for row in rows if row["p50_ms"] is not None]
    assert timed and all(0 < row["p50_ms"] <= row["p99_ms"] for row in timed)


def test_http_soak_slope_flags_a_leak_and_intervals_count_right(bench: Path) -> None:
    """The slope fit: flat and a warm-up step stay under the limit, a leak of 1.5 MiB/min
    under GC-like noise is over it; the interval table's percentiles and counts."""
    import math

    import http_soak

    flat = [(60.0 * i, 100.0) for i in range(10)]
    leak = [(60.0 * i, 100.0 + 2.0 * i) for i in range(10)]  # 2 MiB a minute
    assert http_soak.slope_mib_per_min(flat) == pytest.approx(0.0)
    assert http_soak.slope_mib_per_min(leak) == pytest.approx(2.0)
    assert http_soak.slope_mib_per_min(leak) > http_soak.SLOPE_LIMIT
    assert not http_soak.expected("task 500") and not http_soak.expected("drop error ReadTimeout")
    assert http_soak.expected("churned 404") and not http_soak.expected("task 404")
    saw = [(5.0 * i, 400 + 8 * math.sin(i) + (30 if i % 7 == 0 else 0)) for i in range(360)]
    leak_noisy = [(t, r + 1.5 * t / 60) for t, r in saw]  # 30 minutes, sampled every 5 s
    half = [x for x in leak_noisy if x[0] >= 900]
    assert http_soak.slope_mib_per_min(half) == pytest.approx(1.5, abs=0.1)
    assert http_soak.slope_mib_per_min(half) > http_soak.SLOPE_LIMIT
    assert abs(http_soak.slope_mib_per_min([x for x in saw if x[0] >= 900])) < 0.1
    with pytest.raises(ValueError, match="two samples"):
        http_soak.slope_mib_per_min([(0.0, 1.0)])
    records = [(0.5, "task 200", 0.1), (1.5, "task 200", 0.3), (1.2, "stream 200", 0.2)]
    records += [(0.7, "drop 200", 9.0), (2.5, "task 500", 0.05), (4.1, "bad 404", 0.01)]
    rows = http_soak.intervals(records, 2.0)
    assert [row["requests"] for row in rows] == [4, 1, 1]
    assert rows[0]["p50_ms"] == pytest.approx(200) and rows[0]["p99_ms"] == pytest.approx(300)
    assert rows[1]["unexpected"] == 1 and rows[1]["p50_ms"] is None
    assert rows[2] == {"start_s": 4.0, "requests": 1, "outcomes": {"bad 404": 1},
                       "unexpected": 0, "p50_ms": None, "p99_ms": None}  # fmt: skip
    assert http_soak.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert http_soak.percentile([3.0, 1.0, 2.0, 4.0], 99) == 4.0
    with pytest.raises(ValueError, match="positive"):
        http_soak.intervals(records, 0)


def test_http_soak_reads_the_total_once_nothing_is_in_flight(
    bench: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The soak's server total waits for in-flight requests to settle (a fixed pause read it
    one short); after its deadline it takes the total as it is."""
    import http_soak

    readings = iter([(5, 2), (6, 1), (7, 0), (8, 0)])
    monkeypatch.setattr(http_soak, "server_counts", lambda url: next(readings))
    monkeypatch.setattr(http_soak.time, "sleep", lambda s: None)
    assert http_soak.settled_total("http://x/v1") == 7
    monkeypatch.setattr(http_soak, "server_counts", lambda url: (3, 1))  # never settles
    assert http_soak.settled_total("http://x/v1", wait_s=0.0) == 3


def test_http_soak_client_records_a_request_that_fails_in_any_way(
    bench: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client exception that is not an HTTP error still becomes an outcome (the uncounted
    request of an earlier soak), so sent and recorded always agree."""
    import threading
    import time

    import http_soak
    import httpx

    sent: list[str] = []

    class Broken(httpx.Client):
        def post(self, *args: Any, **kwargs: Any) -> Any:
            sent.append("post")
            raise ValueError("not an httpx error")

        def stream(self, *args: Any, **kwargs: Any) -> Any:
            sent.append("stream")
            raise KeyError("neither is this")

    monkeypatch.setattr(httpx, "Client", Broken)
    records: list[Any] = []
    until = time.monotonic() + 0.2
    http_soak.client("http://127.0.0.1:9/v1", 0, time.monotonic(), until, records, threading.Lock())
    assert sent and len(records) == len(sent)
    outcomes = {r[1] for r in records}
    assert all(" error " in o for o in outcomes), outcomes
    assert any(o.endswith("ValueError") for o in outcomes) and not any(
        http_soak.expected(o) for o in outcomes
    )


def test_fsync_cost_benchmark_turns_fsync_off_and_measures_both(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The labelling and bundle workloads fsync; inside fsync_off nothing does; the
    report has both modes and their ratio."""
    import fsync_cost

    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    for name, work in (
        ("label", fsync_cost.label_work(tmp_path, 32, 8)),
        ("bundle", fsync_cost.bundle_work(tmp_path)),
    ):
        (tmp_path / f"{name}-on").mkdir()
        work(tmp_path / f"{name}-on")
        on = len(calls)
        assert on > 0, name
        with fsync_cost.fsync_off():
            (tmp_path / f"{name}-off").mkdir()
            work(tmp_path / f"{name}-off")
        assert len(calls) == on, name  # no fsync reached the real one
        calls.clear()
    out = tmp_path / "fsync.json"
    argv = ["--rounds", "2", "--inputs", "16", "--batch-size", "8", "--dir", str(tmp_path)]
    fsync_cost.main([*argv, "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["settings"]["inputs"] == 16 and set(report["results"]) == {"label", "bundle"}
    for r in report["results"].values():
        assert set(r["seconds"]) == {"fsync", "no_fsync"}
        assert all(0 < s["min"] <= s["median"] <= s["max"] for s in r["seconds"].values())
        assert r["fsync_over_no_fsync"]["median"] > 0
