"""Fuzz the HTTP request parser (openai_wire.py) and the JSON constraint (constraints.py).

Random bytes, random JSON and mutations of valid chat/completions bodies: the parser
either returns a request or raises a WireError with a 4xx status, never another
exception. The JSON constraint accepts exactly what is a JSON prefix: every serialized
JSON value passes whole and by prefixes, and random text it calls complete is valid JSON.
Bounded here (``TINYLLM_FUZZ_EXAMPLES``, default 100 per test).
"""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyllm.runtime.constraints import JsonPrefix
from tinyllm.runtime.openai_wire import TaskRequest, WireError, parse_json, parse_request

EXAMPLES = int(os.environ.get("TINYLLM_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
CHAT = {
    "model": "sentiment",
    "messages": [{"role": "user", "content": "great film"}],
    "max_tokens": 8,
    "temperature": 0.5,
    "stream": True,
    "stream_options": {"include_usage": True},
    "stop": ["\n"],
    "n": 1,
    "presence_penalty": 0,
}
COMPLETION = {"model": "base", "prompt": "Once", "max_tokens": 4, "top_p": 0.9, "stop": "."}
FIELDS = sorted({*CHAT, *COMPLETION, "logprobs", "top_logprobs", "tools", "seed", "ignore_eos"})


def _parse(kind: Any, body: bytes) -> TaskRequest | None:
    try:
        return parse_request(kind, parse_json(body))
    except WireError as e:
        assert 400 <= e.status < 500 and str(e), e
        return None


@FUZZ
@given(body=st.binary(max_size=300), kind=st.sampled_from(["chat", "completion"]))
def test_random_bytes(body: bytes, kind: str) -> None:
    _parse(kind, body)


@FUZZ
@given(value=json_values, kind=st.sampled_from(["chat", "completion"]))
def test_random_json(value: Any, kind: str) -> None:
    _parse(kind, json.dumps(value).encode())


@FUZZ
@given(draw=st.data(), kind=st.sampled_from(["chat", "completion"]))
def test_mutated_valid_bodies(draw: st.DataObject, kind: str) -> None:
    body = dict(CHAT if kind == "chat" else COMPLETION)
    for _ in range(draw.draw(st.integers(1, 3))):
        key = draw.draw(st.sampled_from(FIELDS))
        if draw.draw(st.booleans()) and key in body:
            del body[key]
        else:
            body[key] = draw.draw(json_values)
    request = _parse(kind, json.dumps(body).encode())
    if request is not None:  # what is accepted is well formed
        assert isinstance(request.task, str) and request.task
        assert request.max_new_tokens is None or request.max_new_tokens >= 1
        assert request.temperature is None or 0.0 <= request.temperature <= 2.0


def test_the_unmutated_bodies_parse() -> None:
    assert _parse("chat", json.dumps(CHAT).encode()) is not None
    assert _parse("completion", json.dumps(COMPLETION).encode()) is not None
    assert _parse("chat", b'{"model": "x", "messages": [], "temperature": NaN}') is None


def _accepts(text: str) -> JsonPrefix | None:
    state = JsonPrefix()
    return state if state.feed(text) else None


@FUZZ
@given(value=json_values, indent=st.sampled_from([None, 1]))
def test_json_constraint_accepts_every_json_value_and_its_prefixes(
    value: Any, indent: int | None
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    state = _accepts(text)
    assert state is not None and state.complete, text
    for cut in range(len(text)):
        assert _accepts(text[:cut]) is not None, text[:cut]


@FUZZ
@given(text=st.text(alphabet='{}[]":,.-+eE0123456789 \\tnrufalsbx\n', max_size=40))
def test_json_constraint_complete_means_valid_json(text: str) -> None:
    state = _accepts(text)
    if state is not None and state.complete:
        json.loads(text)  # raises if the constraint let invalid JSON through
