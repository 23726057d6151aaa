"""A label's tail that the trie forces is written without a model run, with the same output."""

from __future__ import annotations

from pathlib import Path

import tinyllm
from tinyllm.runtime import Engine

INPUTS = [
    "Wake me at 6 tomorrow",
    "How much is in my savings account?",
    "Send 40 euros to Maria",
    "Will it rain in Oslo on Sunday?",
    "Play something by Nina Simone",
    "Get me a room in Lisbon for two nights",
]


def serve(served: Path, forward: bool) -> tuple[list[tuple[int, ...]], dict]:
    engine = Engine.load(served, max_batch=2)
    engine.add_task(tinyllm.api.load_tasks().task("intent"))  # base model, 12 labels
    if not forward:  # the reference: every label token from a model run
        engine._serving()._finish_label = lambda live: None
    outputs = [engine.run("intent", x) for x in INPUTS]
    assert all(o.valid for o in outputs)
    stats = engine.stats()
    engine.close()
    return [o.token_ids for o in outputs], stats


def test_forced_label_tails_skip_their_runs_and_keep_the_outputs(served: Path) -> None:
    tokens, stats = serve(served, forward=True)
    reference, ref_stats = serve(served, forward=False)
    assert tokens == reference
    forwarded = stats["speculation"]["label_forwarded"]
    assert forwarded > 0 and ref_stats["speculation"]["label_forwarded"] == 0
    # one request at a time: every forwarded token is one decode run fewer
    assert ref_stats["decode_runs"] - stats["decode_runs"] == forwarded
    assert stats["decode_placeholder_rows"] == 0


def test_a_forwarded_tail_that_is_not_the_labels_is_caught(served: Path) -> None:
    """The equality above can fail: a forwarder that writes another label's tail."""
    engine = Engine.load(served, max_batch=2)
    engine.add_task(tinyllm.api.load_tasks().task("intent"))
    server = engine._serving()
    honest = server._finish_label

    def wrong(live):  # type: ignore[no-untyped-def]
        honest(live)
        if live.done and len(live.tokens) > 1:
            live.tokens[-1] += 1  # a token the trie does not allow there

    server._finish_label = wrong
    broken = [engine.run("intent", x) for x in INPUTS]
    engine.close()
    reference, _ = serve(served, forward=False)
    assert [o.token_ids for o in broken] != reference
