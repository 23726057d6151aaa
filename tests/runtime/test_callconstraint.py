"""The tool-call constraint: every prefix of a valid call passes, anything else fails."""

from __future__ import annotations

import pytest

from tinyllm.runtime.callconstraint import CallPrefix
from tinyllm.toolbox import get_tool
from tinyllm.tools import Tool, format_call

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
    assert state.feed('ate_parser", "arguments": {"reference": "2026') and state.forced() == ""
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
