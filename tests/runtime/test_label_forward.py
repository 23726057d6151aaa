"""A label's tail that the trie forces is written without a model run, with the same output."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import tinyllm
from tinyllm.runtime import Engine
from tinyllm.runtime.live import Live

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


def test_take_applies_the_stop_rules_sampled_and_forwarded_tokens_share(served: Path) -> None:
    """``_take`` is the one place both paths write a token: stop ids, text and ``stopped``."""
    engine = Engine.load(served, max_batch=2)
    engine.add_task(tinyllm.api.load_tasks().task("intent"))
    server = engine._serving()
    route = engine._route("intent", INPUTS[0], 64, None)  # room for any label
    trie = route.trie
    assert trie is not None
    label: list[int] = []  # one whole label, token by token
    while not trie.complete(label):
        label.append(next(t for t in trie.allowed(label) if t != trie.eos))
    assert len(label) > 1  # the length check below needs a label of 2+ tokens
    eos = next(iter(server.stop_ids))

    live = Live(0, route, Future(), None)
    assert not server._take(live, eos)  # a stop id ends the row, unwritten
    assert live.done == "stop" and live.tokens == [] and live.text == ""

    live = Live(1, route, Future(), None)
    for i, token in enumerate(label):
        assert server._take(live, token)
        assert live.done == (None if i < len(label) - 1 else "stop")  # the label's end
    assert live.tokens == label
    assert live.text == server.router.tokenizer.decode(label)

    short = replace(route, config=replace(route.config, max_new_tokens=1))
    live = Live(2, short, Future(), None)
    assert server._take(live, label[0]) and live.done == "length"

    ignoring = replace(route, config=replace(route.config, ignore_eos=True))
    live = Live(3, ignoring, Future(), None)
    assert server._take(live, eos) and live.tokens == [eos]  # written, the row goes on
    engine.close()


def test_a_label_longer_than_the_task_budget_is_written_whole(served: Path) -> None:
    """A label task's budget is raised to its longest label: one token of room would cut
    every multi-token label into an invalid answer (the old budget)."""
    spec = tinyllm.api.load_tasks().task("intent")
    short = replace(spec, output=replace(spec.output, max_new_tokens=1))
    engine = Engine.load(served, max_batch=2)
    engine.add_task(short)
    route = engine._route("intent", INPUTS[0], None, None)
    outputs = [engine.run("intent", x) for x in INPUTS]
    engine.close()
    assert all(o.valid for o in outputs), [o.text for o in outputs]
    assert all(o.text in spec.output.labels for o in outputs)
    longest = max(len(o.token_ids) for o in outputs)
    assert longest > 1  # a budget of one token would have cut these
    assert route.config.max_new_tokens >= longest
