"""The per-task prefix cache: exact, bounded, invalidated, and it works with chunked prefill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinyllm.errors import ConfigError
from tinyllm.runtime import Engine
from tinyllm.runtime.prefixcache import PrefixCache
from tinyllm.tasks import Example

TASKS = ["sentiment", "booking", "rewrite"]
INPUTS = [
    "The room was spotless and the staff were lovely.",
    "Book a table for two in Oslo on Friday at 8pm",
    "hey can u send me the report",
    "ok",
    "Terrible service, cold food and a rude waiter who ignored us all evening long.",
]


def serve_all(engine: Engine) -> list[tuple[str, tuple[int, ...]]]:
    """Every (task, input) submitted at once (mixed batches); texts and tokens in order."""
    futures = [engine.submit(t, x) for x in INPUTS for t in TASKS]
    return [(f.result().text, f.result().token_ids) for f in futures]


def test_outputs_are_identical_with_and_without_the_cache(served: Path) -> None:
    cold = Engine.load(served, max_batch=4, prefix_cache_mb=0)
    expected = serve_all(cold)
    assert cold.stats()["prefix_cache"]["hits"] == 0
    cold.close()
    warm = Engine.load(served, max_batch=4)
    warm.run("sentiment", "warm up")  # fills sentiment's entry; the rest fill as they go
    assert serve_all(warm) == expected
    again = serve_all(warm)  # every task cached now
    assert again == expected
    stats = warm.stats()["prefix_cache"]
    assert stats["entries"] == 3 and stats["hits"] >= 15 and stats["tokens_saved"] > 0
    assert 0 < stats["bytes"] <= stats["max_bytes"]
    warm.close()


def test_a_wrong_cache_entry_changes_the_outputs(served: Path) -> None:
    """The equality above can fail: a corrupted entry gives other tokens."""
    engine = Engine.load(served, max_batch=2)
    clean = engine.run("rewrite", INPUTS[0]).token_ids
    server = engine._serving()
    (key,) = [k for k in server.cache.entries if k[0] == "rewrite"]
    for array in server.cache.entries[key].kv:
        array += np.float32(0.5)
    assert engine.run("rewrite", INPUTS[0]).token_ids != clean
    engine.close()


def test_chunked_prefill_with_the_cache_is_exact(served: Path) -> None:
    long_input = " ".join(INPUTS[:2])
    small = {"chunk_size": 8, "prefill_tokens": 16}
    cold = Engine.load(served, max_batch=2, prefix_cache_mb=0, **small)
    expected = [cold.run(t, long_input).token_ids for t in TASKS]
    cold.close()
    warm = Engine.load(served, max_batch=2, **small)
    assert [warm.run(t, long_input).token_ids for t in TASKS] == expected  # fills, chunked
    assert [warm.run(t, long_input).token_ids for t in TASKS] == expected  # hits, chunked
    assert warm.stats()["prefix_cache"]["hits"] == 3
    warm.close()


def test_task_changes_drop_their_entries(served: Path, random_adapter: Any) -> None:
    engine = Engine.load(served, max_batch=2)
    serve_all(engine)
    cache = engine._serving().cache
    assert {k[0] for k in cache.entries} == set(TASKS)
    spec = engine.tasks["sentiment"]
    engine.remove_task("sentiment")
    assert {k[0] for k in cache.entries} == {"booking", "rewrite"}
    # A new adapter for the task: its prompts are computed again, with the new adapter.
    other = random_adapter(engine.bundle.config, 2, ("q_proj", "v_proj"), 7)
    engine.add_task(spec, other)
    first = engine.run("sentiment", INPUTS[1]).token_ids
    fresh = Engine.load(served, max_batch=2, prefix_cache_mb=0)
    fresh.remove_task("sentiment")
    fresh.add_task(spec, other)
    assert first == fresh.run("sentiment", INPUTS[1]).token_ids
    assert engine.run("sentiment", INPUTS[1]).token_ids == first  # now from the cache
    fresh.close()
    engine.close()


SHOTS = [
    Example("Book a room in Rome for May 2", '{"city": "Rome"}'),
    Example("Table for 3 in Lyon tonight", '{"city": "Lyon"}'),
]


def test_requests_with_the_same_shots_reuse_their_kv(served: Path) -> None:
    """Worked examples before the input are part of the cached prefix, one entry per shot
    set: the second request with the same shots prefills only its input, with the tokens
    of an engine without the cache; other shots get their own entry."""
    cold = Engine.load(served, max_batch=2, prefix_cache_mb=0)
    expected = [cold.run("booking", x, shots=SHOTS).token_ids for x in INPUTS[:3]]
    other = cold.run("booking", INPUTS[0], shots=SHOTS[:1]).token_ids
    cold.close()
    plain = Engine.load(served, max_batch=2)
    for x in INPUTS[:2]:
        plain.run("booking", x)
    own_prefix = plain.stats()["prefix_cache"]["tokens_saved"]  # one hit: the instruction
    plain.close()
    warm = Engine.load(served, max_batch=2)
    got = [warm.run("booking", x, shots=SHOTS).token_ids for x in INPUTS[:3]]
    assert got == expected
    stats = warm.stats()["prefix_cache"]
    encode = warm._serving().router.tokenizer.encode
    shots_len = sum(len(encode(s.input)) + len(encode(s.output)) for s in SHOTS)
    # two hits, each past the instruction and both shots
    assert stats["hits"] == 2 and stats["tokens_saved"] >= 2 * (own_prefix + shots_len)
    assert warm.run("booking", INPUTS[0], shots=SHOTS[:1]).token_ids == other
    keys = [k for k in warm._serving().cache.entries if k[0] == "booking"]
    assert len(keys) == 2 and len({k[2] for k in keys}) == 2
    warm.close()


def test_memory_is_bounded(served: Path) -> None:
    engine = Engine.load(served, max_batch=2)
    engine.run("rewrite", "x")
    one = engine.stats()["prefix_cache"]["bytes"]
    engine.close()
    bounded = Engine.load(served, max_batch=2, prefix_cache_mb=1.5 * one / 2**20)
    serve_all(bounded)
    stats = bounded.stats()["prefix_cache"]
    assert stats["entries"] == 1 and stats["bytes"] <= stats["max_bytes"]
    bounded.close()
    with pytest.raises(ConfigError, match="prefix_cache_mb must be >= 0"):
        Engine.load(served, prefix_cache_mb=-1)


def kv(n: int, value: float = 0.0) -> list[np.ndarray]:
    return [np.full((2, n, 4), value, np.float32) for _ in range(4)]


def test_lookup_takes_the_common_prefix_and_leaves_one_token() -> None:
    cache = PrefixCache(10_000)
    assert cache.lookup(("t", 1, ""), [1, 2, 3], 3) is None and cache.misses == 1
    assert cache.wants(("t", 1, ""), 3) and not cache.wants(("t", 1, ""), 0)
    cache.store(("t", 1, ""), [1, 2, 3, 4], kv(4, 1.0))
    hit = cache.lookup(("t", 1, ""), [1, 2, 9, 9, 9], 4)
    assert hit is not None and hit.ids == (1, 2) and hit.kv[0].shape == (2, 2, 4)
    whole = cache.lookup(("t", 1, ""), [1, 2, 3, 4], 4)  # the last token is prefilled anyway
    assert whole is not None and whole.ids == (1, 2, 3)
    assert cache.lookup(("t", 1, ""), [7, 8], 2) is None  # nothing in common
    assert cache.lookup(("t", 2, ""), [1, 2, 3, 4], 4) is None  # another adapter slot
    assert not cache.wants(("t", 1, ""), 3)


def test_eviction_is_least_recently_used_and_drop_is_by_task_or_slot() -> None:
    size = sum(a.nbytes for a in kv(4))
    cache = PrefixCache(2 * size)
    cache.store(("a", 0, ""), [1, 2, 3, 4], kv(4))
    cache.store(("b", 1, ""), [1, 2, 3, 4], kv(4))
    cache.lookup(("a", 0, ""), [1, 2, 3, 4, 5], 4)  # a is now the most recent
    cache.store(("c", 2, ""), [1, 2, 3, 4], kv(4))
    assert list(cache.entries) == [("a", 0, ""), ("c", 2, "")] and cache.nbytes <= 2 * size
    cache.store(("huge", 3, ""), list(range(40)), kv(40))  # larger than the whole cache
    assert ("huge", 3, "") not in cache.entries
    cache.drop(slot=2)
    assert list(cache.entries) == [("a", 0, "")]
    cache.drop(task="a")
    assert not cache.entries
    off = PrefixCache(0)
    off.store(("a", 0, ""), [1, 2], kv(2))
    assert off.lookup(("a", 0, ""), [1, 2, 3], 2) is None and not off.wants(("a", 0, ""), 2)
