"""Forced text in one step: a constrained row writes the text its constraint forces (a
tool call's fixed prefix) in one verify run, with greedy outputs token for token those of
one step a token; a fast-forward that skips verification is caught by that comparison."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinyllm
from tinyllm.errors import ConfigError
from tinyllm.runtime import Engine
from tinyllm.runtime import serving as serving_module
from tinyllm.runtime.callconstraint import CallPrefix
from tinyllm.runtime.constraints import JsonTokens
from tinyllm.runtime.serving import Server
from tinyllm.runtime.speculative import Forcing, SpeculationOptions, check_exact
from tinyllm.tasks import ToolUse
from tinyllm.toolbox import register_tool
from tinyllm.tools import Tool

CHOICES = Tool(
    "ff_choices",
    "an enum, an integer and a boolean between forced keys",
    {
        "type": "object",
        "properties": {
            "colour": {"type": "string", "enum": ["red", "blue"]},
            "count": {"type": "integer"},
            "exact": {"type": "boolean"},
        },
    },
    lambda **kw: "",
)
TOOL_TASKS = {"calc": ["calculator", "date_parser"], "choices": ["ff_choices"]}
INPUTS = ["What is 2 plus 3?", "Solve 4*x = 8 for x.", "hello there"]
CALL_TOKENS = 40  # enough for every forced piece of a call on the random model


def add_tool_tasks(engine: Engine) -> Engine:
    suite = tinyllm.api.load_tasks()
    for name, tools in TOOL_TASKS.items():
        task = dataclasses.replace(suite.task("arithmetic"), name=name)
        engine.add_task(dataclasses.replace(task, tools=ToolUse(tools, "answer")))
    return engine


def load(served: Path, fast_forward: bool, rows: int = 1, max_batch: int = 1) -> Engine:
    engine = Engine.load(served, max_batch=max_batch, fast_forward=fast_forward)
    if fast_forward and rows > 1:  # forced drafts also while several rows decode
        engine._serving().speculation = SpeculationOptions(forced=True, max_rows=rows)
    return add_tool_tasks(engine)


def calls(engine: Engine) -> list[tuple[int, ...]]:
    """Every tool task's raw call on every input, one request at a time (greedy)."""
    return [
        engine.run(task, text, execute_tools=False, max_new_tokens=CALL_TOKENS).token_ids
        for text in INPUTS
        for task in TOOL_TASKS
    ]


@pytest.fixture(scope="module")
def stepwise(served: Path) -> Iterator[tuple[list[tuple[int, ...]], int]]:
    """The calls decoded one step a token, and the engine runs they took."""
    register_tool(CHOICES, replace=True)
    engine = load(served, fast_forward=False)
    out = calls(engine)
    stats = engine.stats()
    engine.close()
    assert stats["speculation"]["steps"] == 0  # the peer really decodes one token a run
    yield out, stats["engine_runs"]


def test_forced_text_gives_the_same_calls_in_fewer_runs(served: Path, stepwise: Any) -> None:
    expected, stepwise_runs = stepwise
    engine = load(served, fast_forward=True)
    assert engine._serving().speculation.forced
    assert calls(engine) == expected
    stats = engine.stats()
    engine.close()
    spec = stats["speculation"]
    assert spec["forced_steps"] > 0 and spec["forced_accepted"] > 0
    assert spec["forced_steps"] == spec["steps"]  # no prompt lookup was asked for
    # a verify run that keeps k forced tokens saves k runs (k - 1 if the call ends there)
    assert stepwise_runs - spec["forced_accepted"] <= stats["engine_runs"] < stepwise_runs


def test_a_wrong_forced_draft_costs_speed_not_tokens(
    served: Path, stepwise: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drafts that drop or repeat a forced token are rejected by the verify step."""
    expected, _ = stepwise
    original = Forcing.draft

    def wrong(self: Forcing, state: Any, limit: int) -> list[int]:
        out = original(self, state, limit)
        return out[1:] if len(out) % 2 else out[:1] + out  # drop or repeat the first

    monkeypatch.setattr(Forcing, "draft", wrong)
    engine = load(served, fast_forward=True)
    assert calls(engine) == expected
    engine.close()


@pytest.mark.parametrize("fault", ["drop", "duplicate"])
def test_a_fast_forward_that_skips_verification_is_caught(
    served: Path, stepwise: Any, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """The comparison above can fail: a fast-forward that writes the forced draft into the
    row without the model's picks, with one token dropped or duplicated, changes calls."""
    expected, _ = stepwise

    def trusting(self: Server, live: Any, tokens: list[int], logits: np.ndarray) -> int:
        written = tokens[1:] if fault == "drop" else tokens[:1] + tokens
        for token in written:
            live.tokens.append(token)
            if live.json is not None and not live.json.feed(self.router.token_text(token)):
                live.json = None  # as the loop does when no token fits
        self._advance(live, logits[len(tokens)])
        return len(tokens)

    monkeypatch.setattr(Server, "accept", trusting)
    engine = load(served, fast_forward=True)
    assert calls(engine) != expected
    engine.close()


def test_a_mixed_batch_is_unchanged(served: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tool calls, a label task, a JSON task and a text task submitted together, forced
    drafts verified while other rows decode: every output is the one-at-a-time output."""
    register_tool(CHOICES, replace=True)
    tasks = [*TOOL_TASKS, "sentiment", "booking", "rewrite"]

    def outputs(engine: Engine, together: bool) -> list[tuple[int, ...]]:
        kw = {"execute_tools": False, "max_new_tokens": CALL_TOKENS}
        if not together:
            return [engine.run(t, x, **kw).token_ids for x in INPUTS for t in tasks]
        futures = [engine.submit(t, x, **kw) for x in INPUTS for t in tasks]
        return [f.result().token_ids for f in futures]

    plain = load(served, fast_forward=False, max_batch=4)
    expected = outputs(plain, together=False)
    plain.close()
    rows_with_forced: list[int] = []
    original = serving_module.drafts_for

    def spy(lives: Any, *args: Any) -> Any:
        drafts = original(lives, *args)
        if any(forced for _, forced in drafts.values()):
            rows_with_forced.append(len(lives))
        return drafts

    monkeypatch.setattr(serving_module, "drafts_for", spy)
    engine = load(served, fast_forward=True, rows=4, max_batch=4)
    assert outputs(engine, together=True) == expected
    stats = engine.stats()
    engine.close()
    assert stats["peak_batch_rows"] >= 2 and stats["speculation"]["forced_accepted"] > 0
    assert max(rows_with_forced) >= 2  # a forced draft ran while other rows decoded


def test_forcing_drafts_allowed_tokens_only() -> None:
    """The draft is the forced text's tokens while each is allowed, then tokens that are the
    only one allowed; it never passes the limit and leaves the state unchanged."""
    texts = [chr(c) for c in range(32, 127)] + ['{"', 'name": "', "ff_cho", "ices", "colour"]
    ids = {t: i for i, t in enumerate(texts)}

    def encode(text: str) -> list[int]:  # longest match first, as a BPE merges
        out = []
        while text:
            best = max((t for t in texts if text.startswith(t)), key=len)
            out.append(ids[best])
            text = text[len(best) :]
        return out

    vocab = JsonTokens(texts, eos=None)
    forcing = Forcing(encode, texts.__getitem__, lambda: vocab)
    state = CallPrefix([CHOICES])
    draft = forcing.draft(state, 100)
    assert "".join(texts[i] for i in draft) == '{"name": "ff_choices", "arguments": {"colour": "'
    assert draft[:3] == [ids['{"'], ids['name": "'], ids["ff_cho"]]
    assert state.forced() == '{"name": "ff_choices", "arguments": {"colour": "'  # unchanged
    assert forcing.draft(state, 3) == draft[:3] and forcing.draft(state, 0) == []
    # Without a "b" token, the enum's choice is no choice: "red" is the only allowed path.
    no_b = [t if t != "b" else "" for t in texts]
    narrow = JsonTokens(no_b, eos=None)
    forcing = Forcing(encode, no_b.__getitem__, lambda: narrow)
    text = "".join(no_b[i] for i in forcing.draft(state, 100))
    assert text.endswith('{"colour": "red", "count": ')
    # A forced token the constraint does not allow there ends the draft.
    bad = Forcing(lambda text: [ids["x"], *encode(text)], texts.__getitem__, lambda: vocab)
    assert bad.draft(state, 100) == []


def test_int_weight_engines_never_fast_forward(served: Path) -> None:
    for precision in ("int4", "int8"):
        assert check_exact(0, "ort", precision) is False  # None: off where inexact
        with pytest.raises(ConfigError, match="fast_forward would change this int"):
            check_exact(0, "ort", precision, fast_forward=True)
    assert check_exact(0, "ort", "fp32") is True and check_exact(0, "ort", "fp32", False) is False
    assert check_exact(0, "standard", "int4") is True
    assert check_exact(0, "ort", "fp16", None, "float16") is False  # unmeasured: off
    assert check_exact(0, "ort", "fp16", True, "float16") is True  # unless asked
    engine = Engine.load(served, max_batch=1)
    assert engine._serving().speculation.forced  # an fp32 engine: on by default
    engine.close()
