"""The tool-call constraint: every prefix of a valid call passes, anything else fails."""

from __future__ import annotations

import copy
import dataclasses
import json
import re

import numpy as np
import pytest

from tinyllm.runtime.callconstraint import CallPrefix
from tinyllm.runtime.constraints import JsonTokens, pick_json_token
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.toolbox import get_tool
from tinyllm.tools import Tool, ToolError, call_tool, format_call

KINDS = Tool(
    "kinds",
    "one property of each kind",
    {
        "type": "object",
        "properties": {
            "s": {"type": "string", "maxLength": 5},
            "e": {"type": "string", "enum": ["red", "green"]},
            "i": {"type": "integer"},
            "n": {"type": "number"},
            "b": {"type": "boolean"},
        },
    },
    lambda **kw: "",
)
TOOLS = [get_tool("calculator"), get_tool("date_parser"), KINDS]


@pytest.mark.parametrize(
    "call",
    [
        format_call(TOOLS[0], {"expression": "8*c - 20 = 4"}),
        format_call(TOOLS[1], {"reference": "2026-01-01 10:00", "expression": 'the "next" day'}),
        format_call(KINDS, {"s": "a\\nb", "e": "green", "i": -120, "n": 0.25, "b": False}),
        format_call(KINDS, {"s": "", "e": "red", "i": 0, "n": -3, "b": True}),
    ],
)
def test_every_prefix_of_a_valid_call_passes(call: str) -> None:
    for end in range(len(call) + 1):
        state = CallPrefix(TOOLS)
        assert state.feed(call[:end]), call[:end]
        assert state.complete == (end == len(call))
    assert state.mode == "done"


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "eval", ',  # no such tool
        '{"name": "calculator", "arguments": {"code": ',  # wrong key
        '{"name":"calculator"',  # not the canonical spacing
        '{"name": "kinds", "arguments": {"s": "123456',  # longer than maxLength 5
        '{"name": "kinds", "arguments": {"s": "", "e": "blue',  # not in the enum
        '{"name": "kinds", "arguments": {"s": "", "e": "red", "i": 1.5',  # not an integer
        '{"name": "kinds", "arguments": {"s": "", "e": "red", "i": 01',  # leading zero
        '{"name": "kinds", "arguments": {"s": "", "e": "red", "i": 1, "n": 1e5',  # exponent
        '{"name": "kinds", "arguments": {"s": "", "e": "red", "i": 1, "n": 1, "b": nul',
        '{"name": "calculator", "arguments": {"expression": "a\\x',  # bad escape
        '{"name": "calculator", "arguments": {"expression": "1"}} ',  # after the end
        '{"name": "calculator", "arguments": {"expression": "1\n',  # control character
    ],
)
def test_text_outside_the_calls_fails(text: str) -> None:
    assert not CallPrefix(TOOLS).feed(text)


def test_long_free_strings_take_the_fast_path_and_states_differ_per_tool_set() -> None:
    state = CallPrefix(TOOLS[:1])
    assert state.feed('{"name": "calculator", "arguments": {"expression": "')
    assert state.mode == "string"  # room for any plain token
    assert state.feed("1" * 200) and state.mode == "call"  # 56 characters left
    assert not state.feed("1" * 57)
    other = CallPrefix(TOOLS[1:2])
    assert CallPrefix(TOOLS[:1]).signature() != other.signature()


CALLS = [
    format_call(TOOLS[0], {"expression": "8*c - 20 = 4"}),
    format_call(TOOLS[1], {"reference": "2026-01-01 10:00", "expression": "next day"}),
    format_call(KINDS, {"s": "ab", "e": "green", "i": -12, "n": 0.25, "b": False}),
    format_call(KINDS, {"s": "", "e": "red", "i": 0, "n": -3, "b": True}),
]


def overforced(calls: list[str]) -> list[tuple[str, int]]:
    """(call, end) where ``forced()`` after ``call[:end]`` is not how the call goes on."""
    bad = []
    for call in calls:
        for end in range(len(call) + 1):
            state = CallPrefix(TOOLS)
            assert state.feed(call[:end])
            if not call[end:].startswith(state.forced()):
                bad.append((call, end))
    return bad


def test_forced_text_is_how_every_valid_call_goes_on() -> None:
    assert overforced(CALLS) == []
    state = CallPrefix(TOOLS)
    assert state.forced() == '{"name": "'  # three tools: their names are a choice
    assert state.feed('{"name": "d') and state.forced() == (
        'ate_parser", "arguments": {"reference": "'
    )
    assert state.feed('ate_parser", "arguments": {"reference": "2026') and state.forced() == "-"
    assert state.feed("-01-01 1") and state.forced() == ""  # the pattern leaves a digit free
    assert state.feed("0:0") and state.forced() == ""
    assert state.feed("0") and state.forced() == '", "expression": "'  # the pattern is done
    kinds = CallPrefix([KINDS])
    assert kinds.feed('{"name": "kinds", "arguments": {"s": "x"')
    assert kinds.forced() == ', "e": "'  # up to the enum's choice
    assert kinds.feed(', "e": "g') and kinds.forced() == 'reen", "i": '
    assert kinds.feed('reen", "i": 1') and kinds.forced() == ""  # more digits may follow
    one = CallPrefix(TOOLS[:1])
    assert one.feed(CALLS[0][:-2]) and one.forced() == "}}"
    assert one.feed("}}") and one.complete and one.forced() == ""


def test_a_forced_text_that_runs_through_a_choice_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above fails on a machine that forces past a choice (the first tool's name,
    the enum's first value), so it catches a fast-forward that writes the model's choices."""
    from tinyllm.runtime import callconstraint

    monkeypatch.setattr(callconstraint, "_common", lambda texts: texts[0])
    bad = overforced(CALLS)
    assert (CALLS[1], 0) in bad  # "calculator" forced before the model chose a tool
    assert (CALLS[2], CALLS[2].index('"green"')) in bad  # "red" forced where "green" follows


def patterned(prop: dict[str, object]) -> Tool:
    schema = {"type": "object", "properties": {"v": prop}}
    return Tool("p", "one patterned string", schema, lambda **kw: "")


@pytest.mark.parametrize(
    ("prop", "good", "bad"),
    [
        ({"type": "string", "pattern": "^[0-9]+$"}, ["12", "0"], ["1a", "", "\\n", "\\"]),
        ({"type": "string", "pattern": '^a"/b$'}, ['a\\"/b', 'a\\"\\/b'], ['a"', "a/", "ab"]),
        ({"type": "string", "pattern": "^a\\nb$"}, ["a\\nb"], ["a\\tb", "a\\u000ab"]),
        (
            {"type": "string", "pattern": "^[a-z]{3,}$", "maxLength": 4},
            ["abc", "abcd"],
            ["ab", "abcde"],
        ),
        ({"type": "string", "pattern": "x"}, ["x", "axb", "yyx"], ["", "y"]),  # a search
    ],
)
def test_patterned_strings_follow_the_decoded_characters(
    prop: dict[str, object], good: list[str], bad: list[str]
) -> None:
    head = '{"name": "p", "arguments": {"v": "'
    for value in good:
        state = CallPrefix([patterned(prop)])
        assert state.feed(head + value + '"}}') and state.complete, value
    for value in bad:
        assert not CallPrefix([patterned(prop)]).feed(head + value + '"}}'), value
    state = CallPrefix([patterned({"type": "string", "pattern": "^[a-z]{3}$", "maxLength": 512})])
    assert state.feed(head) and state.mode == "call"  # no fast path past a pattern
    assert not state.copy().feed("1")


@pytest.mark.parametrize(
    ("pattern", "room", "fed", "forced"),
    [
        ("^ab$", {}, "", 'ab"}}'),  # the pattern's characters, its closing quote, the end
        ("^/x$", {}, "", ""),  # "/" may also be written "\\/"
        ("^/x$", {}, "\\/", 'x"}}'),
        ("^/x$", {}, "\\", ""),  # inside an escape
        ("^a\\\\$", {}, "", "a"),  # a backslash is written only as "\\\\"
        ("^a\\n?$", {}, "a", ""),  # the quote, or a newline written "\\n"
        ("^a\\n?$", {}, "a\\n", '"}}'),
        ("^ab(cd)?$", {"maxLength": 3}, "ab", '"}}'),  # "cd" does not fit
        ("^ab(cd)?$", {"maxLength": 4}, "ab", ""),
        ('^a"?$', {"maxLength": 1}, "a", '"}}'),  # an escaped quote does not fit
        ('^a"?$', {}, "a", ""),
    ],
)
def test_a_pattern_forces_its_only_character_unless_an_escape_could_write_it(
    pattern: str, room: dict[str, int], fed: str, forced: str
) -> None:
    """The cases runtime/cpp/tests/test_tools.cpp pins C++'s forced() to."""
    state = CallPrefix([patterned({"type": "string", "pattern": pattern, **room})])
    assert state.feed('{"name": "p", "arguments": {"v": "' + fed)
    assert state.forced() == forced
    if forced:
        assert state.feed(forced)  # how the call goes on


def test_a_pattern_outside_the_subset_leaves_the_string_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tool = patterned({"type": "string", "pattern": "(?=a)ab", "maxLength": 8})
    state = CallPrefix([tool])
    assert "property 'v': not constrained token by token" in caplog.text
    assert state.feed('{"name": "p", "arguments": {"v": "zz"}}')  # as without a pattern
    with pytest.raises(ToolError, match="does not match"):
        call_tool(tool, {"v": "zz"})  # the check after the call still applies


def scripted_call(tool: Tool, want: str) -> str:
    """Greedy constrained decoding of a scripted model that wants to write ``want``: a
    token scores its length where it continues ``want`` (realigned on the second key once
    written), 0.5 if it holds letters, else 0."""
    texts = sorted(set(want) | set("0123456789:- ") | {"tomorrow", " at", " 5pm", "2026"})
    tokens = JsonTokens(texts, eos=None)
    state, out, rng = CallPrefix([tool]), "", np.random.default_rng(0)
    key = ', "expression"'
    while not state.complete:
        at = out.find(key)
        rest = want[len(out) :] if at < 0 else want[want.index(key) + len(out) - at :]
        logits = np.array(
            [float(len(t)) if rest.startswith(t) else 0.5 * any(map(str.isalpha, t)) for t in texts]
        )
        token = texts[pick_json_token(state, logits, GenerationConfig(temperature=0), rng, tokens)]
        assert state.feed(token)
        out += token
    return out


def test_the_date_pattern_forces_digits_where_the_model_prefers_letters() -> None:
    date = get_tool("date_parser")
    want = format_call(date, {"reference": "tomorrow at 5pm", "expression": "tomorrow at 5pm"})
    written = json.loads(scripted_call(date, want))["arguments"]
    assert re.fullmatch(date.parameters["properties"]["reference"]["pattern"], written["reference"])
    assert written["expression"] == "tomorrow at 5pm"  # the free string is the model's
    params = copy.deepcopy(date.parameters)
    del params["properties"]["reference"]["pattern"]
    loose = dataclasses.replace(date, parameters=params)
    free = json.loads(scripted_call(loose, want))["arguments"]
    assert free["reference"] == "tomorrow at 5pm"  # what the schema's check then refuses
    with pytest.raises(ToolError, match="does not match"):
        call_tool(date, free)
