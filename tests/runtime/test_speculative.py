"""Speculative decoding with prompt-lookup drafts: greedy outputs identical to plain
decoding (mixed batches, adapters, constraints, stops, limits), and a broken verifier fails."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinyllm.errors import ConfigError
from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime.serving import Server
from tinyllm.runtime.speculative import SpeculationOptions, draft

TASKS = ["sentiment", "booking", "rewrite"]  # label (trie), JSON (constraint), text
INPUTS = [
    "Book a table for two in Oslo on Friday at 8pm, Oslo Oslo on Friday",
    "hey can u send me the report, the report, the report asap",
    "The room was spotless and the staff were lovely.",
    "ok ok ok ok ok ok ok ok",
]


def load(bundle: Path, speculate: int, rows: int = 1, **kw: Any) -> Engine:
    """An engine that drafts up to ``speculate`` tokens while at most ``rows`` rows decode."""
    engine = Engine.load(bundle, speculate=speculate, **kw)
    server = engine._serving()
    server.speculation = SpeculationOptions(draft_tokens=speculate, max_rows=rows)
    return engine


def one_by_one(engine: Engine, **kw: Any) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for text in INPUTS:
        for task in TASKS:
            result = engine.run(task, text, **kw)
            out.append((result.text, result.token_ids))
    return out


def all_at_once(engine: Engine) -> list[tuple[str, tuple[int, ...]]]:
    futures = [engine.submit(t, x) for x in INPUTS for t in TASKS]
    return [(f.result().text, f.result().token_ids) for f in futures]


def test_draft_finds_the_latest_earlier_occurrence() -> None:
    opts = SpeculationOptions(draft_tokens=4, max_ngram=3)
    assert draft([1, 2, 3, 9, 1, 2], opts, 10) == [3, 9, 1, 2]
    # the longest run wins: [5, 1, 2] occurs at 4, before it [1, 2] alone at 0
    assert draft([1, 2, 7, 7, 5, 1, 2, 8, 5, 1, 2], opts, 10) == [8, 5, 1, 2]
    assert draft([1, 2, 3, 9, 1, 2], opts, 2) == [3, 9]  # the limit cuts it
    assert draft([1, 2, 3, 9, 1, 2], opts, 0) == []
    assert draft([1, 2, 3, 4], opts, 10) == []  # 4 never occurred before
    assert draft([4], opts, 10) == []
    assert draft([1, 2, 3, 9, 1, 2], SpeculationOptions(draft_tokens=8, min_ngram=3), 10) == []


def test_bad_speculation_options_are_errors() -> None:
    for bad in ({"draft_tokens": -1}, {"min_ngram": 0}, {"min_ngram": 4}, {"max_rows": 0}):
        with pytest.raises(ConfigError):
            SpeculationOptions(**bad)


def test_verify_logits_match_plain_steps(served: Path) -> None:
    """One verify run gives each position the logits that one step at a time gives."""
    engine = Engine.load(served, max_batch=2)
    session = engine.session
    prompt = engine.encode("Book a table for two in Oslo")
    session.prefill_rows(0, [prompt], [0])
    fed = [5, 17, 3, 99]
    verified = session.verify(0, fed, len(prompt)).copy()
    session.prefill_rows(1, [prompt], [0])
    held = len(prompt)
    for j, token in enumerate(fed):
        step = session.prefill_rows(1, [[token]], [held])[0]
        np.testing.assert_allclose(verified[j], step, atol=1e-4)
        held += 1
    engine.close()


def test_task_outputs_are_identical_with_and_without_speculation(served: Path) -> None:
    plain = load(served, 0, max_batch=4)
    expected_single = one_by_one(plain)
    expected_mixed = all_at_once(plain)
    assert plain.stats()["speculation"]["steps"] == 0
    plain.close()
    spec = load(served, 6, rows=4, max_batch=4)  # drafting rows share steps with plain ones
    assert one_by_one(spec) == expected_single
    assert all_at_once(spec) == expected_mixed
    stats = spec.stats()["speculation"]
    assert stats["steps"] > 0 and stats["accepted"] > 0  # the drafts were used
    assert stats["accepted"] <= stats["drafted"]
    spec.close()


def test_limits_and_stops_are_identical(served: Path) -> None:
    """Every max_new_tokens up to 12, stop strings, ignore_eos and the context limit."""
    prompt = "ok ok ok ok ok ok ok ok ok ok ok ok"
    configs = [GenerationConfig(max_new_tokens=n, ignore_eos=True) for n in range(1, 13)]
    configs += [
        GenerationConfig(max_new_tokens=24, stop=("ok",)),
        GenerationConfig(max_new_tokens=24, stop=(" ", "k")),
        GenerationConfig(max_new_tokens=200, ignore_eos=True),  # reaches the context limit
    ]
    results = {}
    for speculate in (0, 5):
        engine = load(served, speculate, max_batch=2, max_seq_len=64)
        results[speculate] = [
            engine.generate(prompt, replace(c, speculate=True))[0] for c in configs
        ]
        if speculate:
            assert engine.stats()["speculation"]["accepted"] > 0
        engine.close()
    for plain, spec in zip(results[0], results[5], strict=True):
        assert (spec.token_ids, spec.text, spec.finish_reason) == (
            plain.token_ids,
            plain.text,
            plain.finish_reason,
        )
    assert results[5][-1].finish_reason == "length"


def test_adapter_rows_are_identical(served: Path) -> None:
    """generate with a task's adapter (booking's) and drafts, against plain decoding."""
    config = GenerationConfig(max_new_tokens=24, speculate=True, ignore_eos=True)
    ids = [Engine.load(served).encode(x) for x in INPUTS]
    outs = []
    for speculate in (0, 4):
        engine = load(served, speculate, max_batch=4)
        outs.append([g.token_ids for g in engine.generate_ids(ids, config, adapter="booking")])
        outs.append([g.token_ids for g in engine.generate_ids(ids[:1], config)])
        engine.close()
    assert outs[0] == outs[2] and outs[1] == outs[3]


def test_sampling_does_not_speculate(served: Path) -> None:
    engine = load(served, 8, max_batch=2)
    config = GenerationConfig(max_new_tokens=16, temperature=0.8, seed=3, speculate=True)
    engine.generate("ok ok ok ok ok ok", config)
    assert engine.stats()["speculation"]["steps"] == 0
    engine.close()


def test_a_broken_verifier_is_caught(served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity check can fail: a verifier that keeps every draft token changes them."""
    plain = load(served, 0, max_batch=4)
    expected = one_by_one(plain)
    plain.close()

    def keep_the_draft(self: Server, live: Any, tokens: list[int], logits: np.ndarray) -> None:
        forced = np.full_like(logits, -1e9)
        for j, token in enumerate(tokens):
            forced[j, token] = 0.0  # accept the draft token whatever the model says
        forced[len(tokens)] = logits[len(tokens)]
        original(self, live, tokens, forced)

    original = Server.accept
    monkeypatch.setattr(Server, "accept", keep_the_draft)
    broken = load(served, 6, max_batch=4)
    assert one_by_one(broken) != expected
    broken.close()


def test_an_engine_that_cannot_verify_decodes_plainly(served: Path) -> None:
    engine = load(served, 8, max_batch=2)
    expected = [engine.run(t, INPUTS[0]).token_ids for t in TASKS]
    engine.session.verifies = False  # as an engine exported before the verify step
    assert [engine.run(t, INPUTS[0]).token_ids for t in TASKS] == expected
    before = engine.stats()["speculation"]["steps"]
    assert [engine.run(t, INPUTS[1]).token_ids for t in TASKS]
    assert engine.stats()["speculation"]["steps"] == before
    with pytest.raises(ConfigError, match="re-export"):
        engine.session.verify(0, [1, 2], 3)
    engine.close()


def test_which_tasks_speculate(served: Path) -> None:
    from dataclasses import replace as with_

    from tinyllm.api import load_tasks

    suite = load_tasks()
    booking = suite.task("booking")
    assert [suite.task(n).output.speculates for n in TASKS] == [False, True, True]
    assert "speculate" not in booking.to_dict()["output"]  # hashes as before the key
    quiet = with_(booking, output=with_(booking.output, speculate=False))
    assert quiet.to_dict()["output"]["speculate"] is False and not quiet.output.speculates
    engine = Engine.load(served, max_batch=2, fast_forward=False)  # no forced-text drafts
    engine.remove_task("booking")
    engine.add_task(quiet)
    engine.run("booking", INPUTS[0])
    assert engine.stats()["speculation"]["steps"] == 0  # the task opted out
    engine.close()
    with pytest.raises(ConfigError, match="draft_tokens"):
        Engine.load(served, speculate=-1)


@pytest.mark.parametrize("name", ["onnx-cpu-fp32", "onnx-standard-fp32"])
def test_both_graph_flavours_verify_exactly(exported: Path, name: str) -> None:
    config = GenerationConfig(max_new_tokens=20, ignore_eos=True, speculate=True)
    prompts = ["one two three one two three one two", "a b a b a b a"]
    outs = []
    for speculate in (0, 6):
        engine = load(exported, speculate, engine=name, max_batch=2)
        outs.append([engine.generate(p, config)[0].token_ids for p in prompts])
        if speculate:
            assert engine.stats()["speculation"]["steps"] > 0
        engine.close()
    assert outs[0] == outs[1]


def test_int_weight_engines_refuse_speculation(exported: Path, tmp_path: Path) -> None:
    """MatMulNBits' several-row path rounds differently (SmolLM2 int4 changed outputs), so an
    int4 or int8 ``onnx-cpu`` engine refuses to speculate; asked for nothing, it loads."""
    import tinyllm

    bundle, _ = tinyllm.export(exported, "onnx-cpu", tmp_path / "int.tllm", quant="int4")
    bundle, _ = tinyllm.export(bundle.path, "onnx-cpu", quant="int8")
    for name in ("onnx-cpu-int4", "onnx-cpu-int8"):
        with pytest.raises(ConfigError, match=r"would change this int\d engine's outputs"):
            Engine.load(bundle.path, engine=name, speculate=8)
        with pytest.raises(ConfigError, match=r"fast_forward would change this int\d engine"):
            Engine.load(bundle.path, engine=name, fast_forward=True)
        engine = Engine.load(bundle.path, engine=name, speculate=0)
        assert not engine._serving().speculation.forced  # forced text: off where inexact
        engine.close()
    Engine.load(bundle.path, engine="onnx-cpu-fp32", speculate=8).close()
