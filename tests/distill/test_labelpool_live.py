"""Labelling at scale against a live `tinyllm serve` teacher (a subprocess on loopback)."""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinyllm import api
from tinyllm.distill.labelling import label_task, read_journal
from tinyllm.distill.labelmerge import merge_shards
from tinyllm.distill.labelpool import Shard
from tinyllm.distill.teacher_specs import teacher_from_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import labelling as bench

SENTIMENT = api.load_tasks().task("sentiment")


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bundle = bench.served_bundle(tmp_path_factory.mktemp("live"))
    with bench.live_server(bundle, max_batch=8) as url:
        yield url


def test_concurrent_sharded_labelling_against_tinyllm_serve(live_url: str, tmp_path: Path) -> None:
    texts = bench.inputs(24)
    serial = tmp_path / "serial"
    teacher = teacher_from_spec(f"tinyllm:{live_url}")
    one = label_task(SENTIMENT, texts, teacher, serial, k=1, temperature=0.0, progress=False)
    assert one.labelled == 24 and teacher.requests == 24  # type: ignore[attr-defined]
    expected = {
        r["input"]: r["candidates"] for r in read_journal(serial / "sentiment.journal.jsonl")
    }
    # Two shards, each with 8 requests in flight, against the same server: same answers
    # (greedy decoding; the server's batching does not change a row's tokens).
    sharded = tmp_path / "sharded"
    for i in range(2):
        stats = label_task(
            SENTIMENT, texts, teacher_from_spec(f"tinyllm:{live_url}"), sharded, k=1,
            temperature=0.0, batch_size=1, concurrency=8, shard=Shard(i, 2), progress=False,
        )  # fmt: skip
        assert stats.labelled == len(Shard(i, 2).select(texts))
    merged = merge_shards(SENTIMENT, texts, sharded, 2)
    assert merged.labelled == 24
    got = {r["input"]: r["candidates"] for r in read_journal(sharded / "sentiment.journal.jsonl")}
    assert got == expected
    for name in ("sentiment.jsonl", "sentiment.rejected.jsonl"):
        assert (sharded / name).read_bytes() == (serial / name).read_bytes(), name


def _gauge(url: str, name: str) -> int:
    """One gauge of the server's ``/metrics``."""
    text = urllib.request.urlopen(url.removesuffix("/v1") + "/metrics", timeout=30).read()
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no {name} in /metrics:\n" + text.decode())


def test_concurrency_keeps_requests_in_flight_together(tmp_path: Path) -> None:
    """Concurrent labelling really overlaps requests at the server, and one at a time does
    not: the server's in-flight peak counts it (it falls before a response is sent, so
    serial requests never overlap). How many overlap depends on scheduling (3 of 8 on a
    loaded machine), so the check is overlap itself; tests/distill/test_labelpool.py
    shows the client keeps exactly 8 calls in flight, benchmarks/labelling.py measures
    the speed-up."""
    with bench.live_server(bench.served_bundle(tmp_path / "b"), max_batch=8) as url:
        bench.label_rate(url, bench.inputs(8), 1, tmp_path / "c1")
        assert _gauge(url, "tinyllm_requests_in_flight_peak") == 1
        bench.label_rate(url, bench.inputs(32), 8, tmp_path / "c8")
        assert _gauge(url, "tinyllm_requests_in_flight_peak") >= 2
