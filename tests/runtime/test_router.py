"""Router: prompts as evaluation builds them, parsing by output kind, label constraints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinyllm
from tinyllm.chat import ChatTokenizer
from tinyllm.runtime import Engine
from tinyllm.runtime.constraints import JsonPrefix
from tinyllm.runtime.router import LabelTrie, Router, mask_logits, parse_output
from tinyllm.tasks import conversation

SUITE = tinyllm.api.load_tasks()


def test_prompt_is_the_evaluation_conversation(served: Path) -> None:
    bundle = tinyllm.open_bundle(served)
    tok = ChatTokenizer(bundle.tokenizer_dir)
    router = Router(tok)
    spec = SUITE.task("booking")
    router.add(spec, 3)
    route = router.route("booking", "two people, Oslo", None, 0.5)
    expected = tok.encode(tok.apply_chat_template(conversation(spec, "two people, Oslo", [])))
    assert route.prompt == expected and route.slot == 3
    assert route.config.max_new_tokens == spec.output.max_new_tokens
    assert route.config.temperature == 0.5 and not route.first_line  # JSON may span lines
    assert router.route("booking", "x", 7, None).config.max_new_tokens == 7


def test_parse_by_output_kind() -> None:
    sentiment, booking, rewrite = (SUITE.task(n) for n in ("sentiment", "booking", "rewrite"))
    assert parse_output(sentiment, "Negative.") == ("negative", True, None)
    value, ok, error = parse_output(sentiment, "great stuff")
    assert (value, ok) == (None, False) and "is not one of the labels" in str(error)
    good = '```json\n{"city": "Oslo", "date": "2026-05-01", "guests": 2}\n```'
    value, ok, error = parse_output(booking, good)
    assert ok and error is None and value == {"city": "Oslo", "date": "2026-05-01", "guests": 2}
    value, ok, error = parse_output(booking, '{"city": "Oslo"')
    assert (value, ok) == (None, False) and str(error).startswith("not valid JSON")
    value, ok, error = parse_output(booking, '{"city": "Oslo", "date": "2026-05-01", "guests": 0}')
    assert not ok and "schema" in str(error)
    assert parse_output(rewrite, "Please send me the report.\nextra") == (
        "Please send me the report.",
        True,
        None,
    )
    assert parse_output(rewrite, "   ")[1] is False


def test_label_trie_allows_only_label_continuations() -> None:
    trie = LabelTrie([[5, 6], [5, 7, 8], [9]], eos=0)
    assert sorted(trie.allowed([])) == [5, 9]
    assert sorted(trie.allowed([5])) == [6, 7]
    assert trie.allowed([5, 6]) == [0] and trie.complete([5, 6])
    assert trie.allowed([5, 7]) == [8] and not trie.complete([5, 7])
    prefix = LabelTrie([[5], [5, 6]], eos=0)  # one label is a prefix of another
    assert sorted(prefix.allowed([5])) == [0, 6] and not prefix.complete([5])
    logits = np.arange(10, dtype=np.float32)
    masked = mask_logits(logits, trie.allowed([]))
    assert int(np.argmax(masked)) == 9 and np.isneginf(masked[[0, 1, 6, 7, 8]]).all()


def test_constrained_label_tasks_always_answer_a_label(served: Path) -> None:
    inputs = ["The room was spotless", "awful", "it was fine I guess", "ok", "no"]
    free = Engine.load(served, max_batch=4, constrain=False)
    loose = [free.run("sentiment", x) for x in inputs]
    free.close()
    engine = Engine.load(served, max_batch=4)
    strict = [engine.run("sentiment", x) for x in inputs]
    engine.close()
    labels = SUITE.task("sentiment").output.labels
    assert all(o.valid and o.value in labels and o.text == o.value for o in strict)
    assert not all(o.valid for o in loose)  # the random model, unconstrained, goes astray
    with pytest.raises(tinyllm.errors.UnknownTaskError, match="this engine serves: none"):
        Router(ChatTokenizer(tinyllm.open_bundle(served).tokenizer_dir)).route("x", "y", None, None)


@pytest.mark.parametrize(
    "text",
    [
        '{"city": "Oslo", "guests": 2, "ok": true, "x": null, "f": -1.5e+3, "a": [1, [], {}]}',
        ' [ "a\\"b\\u00e9", false ] ',
        "0",
        '"\\n"',
    ],
)
def test_json_prefix_accepts_every_prefix_of_valid_json(text: str) -> None:
    import json

    json.loads(text)
    for end in range(len(text) + 1):
        state = JsonPrefix()
        assert state.feed(text[:end]), text[:end]
    assert state.complete


@pytest.mark.parametrize(
    "text",
    [
        '{"a" 1}',
        " " * 17,
        "{,}",
        "[1,]",
        '{"a": 01}',
        "tru e",
        '{"a": 1}}',
        "[1 2]",
        '"\\x"',
        "{'a': 1}",
    ],
)
def test_json_prefix_rejects_invalid_json(text: str) -> None:
    assert not JsonPrefix().feed(text)


def test_json_prefix_completion() -> None:
    state = JsonPrefix()
    assert state.feed('{"a": [1, 2') and not state.complete
    assert state.feed("]}") and state.complete and state.mode == "done"
    number = JsonPrefix()
    assert number.feed("12") and number.complete and number.feed(".5e3")
    assert not JsonPrefix("{").feed(" [") and JsonPrefix("{").feed(' {"a": [1]}')


def test_constrained_json_task_writes_json(served: Path) -> None:
    inputs = ["Book a table for two in Oslo", "3 guests, Paris, 2026-05-01", "x", "hello there"]
    engine = Engine.load(served, max_batch=4)
    strict = [engine.run("booking", x) for x in inputs]
    engine.close()
    free = Engine.load(served, max_batch=4, constrain=False)
    loose = [free.run("booking", x) for x in inputs]
    free.close()
    for out in strict:
        assert JsonPrefix().feed(out.text)  # never leaves JSON syntax
        if out.finish_reason == "stop":
            assert not str(out.error).startswith("not valid JSON")
    assert any(o.finish_reason == "stop" for o in strict)
    assert all(str(o.error).startswith("not valid JSON") for o in loose)
