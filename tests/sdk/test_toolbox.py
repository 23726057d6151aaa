"""Tools: the registry, the schema subset, and safe calls against hostile arguments."""

from __future__ import annotations

import json
import threading

import pytest
from tool_functions import busy, nap

from tinyllm.argschema import validation_error
from tinyllm.errors import ConfigError
from tinyllm.toolbox import get_tool, register_tool, tool_names
from tinyllm.tools import Tool, ToolError, call_tool, format_call, parse_call, stuck_calls

TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def test_builtins_are_registered_and_compute() -> None:
    assert {"calculator", "date_parser", "booking_extractor"} <= set(tool_names())
    assert call_tool(get_tool("calculator"), {"expression": "2 + 3 * 4"}) == "14"
    dates = get_tool("date_parser")
    got = call_tool(dates, {"reference": "2026-07-09 21:25", "expression": "tomorrow at 8am"})
    assert got == "2026-07-10T08:00"
    booking = call_tool(
        get_tool("booking_extractor"), {"text": "Table for two in Lyon on 2025-05-02"}
    )
    assert json.loads(booking) == {"city": "Lyon", "date": "2025-05-02", "guests": 2}


def test_user_tools_register_by_name() -> None:
    tool = Tool("shout_test", "upper-cases", TEXT, lambda text: text.upper())
    register_tool(tool)
    assert call_tool(get_tool("shout_test"), {"text": "hi"}) == "HI"
    with pytest.raises(ConfigError, match="already registered"):
        register_tool(tool)
    register_tool(Tool("shout_test", "lower", TEXT, lambda text: text.lower()), replace=True)
    assert call_tool(get_tool("shout_test"), {"text": "HI"}) == "hi"
    with pytest.raises(ConfigError, match=r"unknown tool 'nope'; registered tools: .*calculator"):
        get_tool("nope")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"expression": "2 ** 99999999"}, "exponents must be integers of at most"),
        ({"expression": "(" * 200 + "1" + ")" * 200}, "characters"),
        ({"expression": "(" * 60 + "1" + ")" * 60}, "nested deeper"),
        ({"expression": "__import__('os').system('echo hi')"}, "unexpected character '_'"),
        ({"expression": float("nan")}, "must be a string, got float"),
        ({"expression": "9" * 10_000_000}, "10000000 characters"),
        ({"expression": 7}, "must be a string, got int"),
        ({"expression": ["1+1"]}, "must be a string, got list"),
        ({"expression": None}, "must be a string, got NoneType"),
        ({}, "missing required argument 'expression'"),
        ({"expression": "1", "code": "x"}, "unexpected argument 'code'"),
        ("1 + 1", "must be a JSON object, got str"),
        ({"expression": ""}, "at least 1 characters"),
    ],
)
def test_hostile_calculator_arguments_fail_with_the_reason(arguments: object, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        call_tool(get_tool("calculator"), arguments)


NUMBER = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "must be a number, got bool"),
        (-1, ">= 0"),
        ("1", "must be a number, got str"),
    ],
)
def test_numbers_must_be_finite_and_in_range(value: object, message: str) -> None:
    assert message in (validation_error(NUMBER, {"x": value}) or "")
    assert validation_error(NUMBER, {"x": 2.5}) is None


def test_unsupported_schemas_are_refused_when_the_tool_is_made() -> None:
    def make(schema: dict) -> Tool:
        return Tool("t", "d", schema, lambda **k: "")

    with pytest.raises(ConfigError, match="type object"):
        make({"type": "string"})
    with pytest.raises(ConfigError, match="unsupported schema keyword 'oneOf'"):
        make({"type": "object", "properties": {"a": {"type": "string"}}, "oneOf": []})
    with pytest.raises(ConfigError, match="type must be one of"):
        make({"type": "object", "properties": {"a": {"type": "array"}}})
    with pytest.raises(ConfigError, match="required property 'b'"):
        make({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]})
    with pytest.raises(ConfigError, match="name must be"):
        Tool("bad name", "d", TEXT, lambda text: text)


def held_tool(name: str, timeout_s: float) -> tuple[Tool, threading.Event, threading.Event]:
    """A tool that runs until the test releases it: (tool, release, finished). A call that
    comes back while ``finished`` is unset did not wait for the tool (no clock involved)."""
    release, finished = threading.Event(), threading.Event()

    def held(text: str) -> str:
        release.wait(timeout=60)
        finished.set()
        return text

    return Tool(name, "d", TEXT, held, timeout_s=timeout_s), release, finished


def test_failing_slow_and_wrong_tools_make_tool_errors() -> None:
    def boom(text: str) -> str:
        raise RuntimeError("kaput")

    with pytest.raises(ToolError, match="tool boom: RuntimeError: kaput"):
        call_tool(Tool("boom", "d", TEXT, boom), {"text": "a"})
    slow, release, finished = held_tool("slow", timeout_s=0.2)
    try:
        with pytest.raises(ToolError, match=r"no result within 0\.2 s"):
            call_tool(slow, {"text": "a"})
        assert not finished.is_set()  # the error came while the tool still ran
    finally:
        release.set()
    with pytest.raises(ToolError, match="returned int, not text"):
        call_tool(Tool("num", "d", TEXT, lambda text: 3), {"text": "a"})
    with pytest.raises(ToolError, match="characters \\(max"):
        call_tool(Tool("big", "d", TEXT, lambda text: "x" * 10**6), {"text": "a"})


def test_calls_round_trip_in_schema_order() -> None:
    dates = get_tool("date_parser")
    text = format_call(dates, {"expression": "tomorrow", "reference": "2026-01-01 00:00"})
    assert text == (
        '{"name": "date_parser", "arguments": '
        '{"reference": "2026-01-01 00:00", "expression": "tomorrow"}}'
    )
    assert parse_call(text) == (
        "date_parser",
        {"reference": "2026-01-01 00:00", "expression": "tomorrow"},
    )
    with pytest.raises(ToolError, match="not valid JSON"):
        parse_call('{"name": "calculator"')
    with pytest.raises(ToolError, match="a tool call is"):
        parse_call('{"name": "calculator"}')


def test_a_timed_out_python_tool_is_cancelled_not_left_running() -> None:
    with pytest.raises(ToolError, match=r"no result within 0\.2 s \(cancelled\)"):
        call_tool(Tool("spin", "d", TEXT, busy, timeout_s=0.2), {"text": "a"})
    # the spinning thread was stopped (a thread cannot be killed: without the
    # cancellation it would spin on for the rest of the process)
    assert not [t for t in threading.enumerate() if t.name == "tinyllm-tool-spin"]
    assert "spin" not in stuck_calls()


def test_a_tool_stuck_in_c_code_is_counted_and_refuses_calls_until_it_ends() -> None:
    tool, release, _ = held_tool("held_stuck", timeout_s=0.2)
    try:
        with pytest.raises(ToolError, match="no result within"):
            call_tool(tool, {"text": "a"})  # blocked in a C lock wait: cannot be interrupted
        assert stuck_calls().get("held_stuck") == 1
        with pytest.raises(ToolError, match=r"still running .* isolation='process'"):
            call_tool(tool, {"text": "b"})  # at most one stuck thread per tool
        (stuck,) = [t for t in threading.enumerate() if t.name == "tinyllm-tool-held_stuck"]
    finally:
        release.set()
    stuck.join(timeout=60)  # released, it ends (the cancellation lands when the wait returns)
    assert "held_stuck" not in stuck_calls() and call_tool(tool, {"text": "c"}) == "c"


def test_process_isolation_kills_a_timed_out_call() -> None:
    import multiprocessing

    tool = Tool("nap_proc", "d", TEXT, nap, timeout_s=0.5, isolation="process")
    assert call_tool(tool, {"text": "0"}) == "awake"  # starts a worker, then reuses it
    (worker,) = [p for p in multiprocessing.active_children() if p.name == "tinyllm-tool-nap_proc"]
    with pytest.raises(ToolError, match="tool nap_proc: RuntimeError: kaput"):
        call_tool(tool, {"text": "boom"})
    assert worker.is_alive()  # an exception is an answer: the worker stays
    with pytest.raises(ToolError, match="worker process was killed"):
        call_tool(tool, {"text": "30"})
    assert not worker.is_alive() and "nap_proc" not in stuck_calls()
    assert call_tool(tool, {"text": "0"}) == "awake"  # a fresh worker
    with pytest.raises(ConfigError, match="isolation='process' needs a function"):
        Tool("lam", "d", TEXT, lambda text: text, isolation="process")
    with pytest.raises(ConfigError, match="isolation must be"):
        Tool("odd", "d", TEXT, nap, isolation="fork")  # type: ignore[arg-type]


def test_a_shorter_time_limit_than_the_tools_is_kept() -> None:
    tool, release, finished = held_tool("held_short", timeout_s=5)
    try:
        with pytest.raises(ToolError, match=r"no result within 0\.1 s"):
            call_tool(tool, {"text": "a"}, timeout_s=0.1)
        assert not finished.is_set()  # the call's limit, not the tool's 5 s, ended it
    finally:
        release.set()
