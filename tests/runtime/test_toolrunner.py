"""The engine runs the tools a task's model calls: constrained calls, safe execution,
the result as the answer or in context, on a tiny random model."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

import tinyllm
from tinyllm.calculator import evaluate
from tinyllm.runtime import Engine
from tinyllm.tasks import TaskSpec, ToolUse
from tinyllm.toolbox import calculator, register_tool
from tinyllm.tools import Tool, parse_call

SUITE = tinyllm.api.load_tasks()
EXPRESSIONS = ["2 + 3", "4 * 5", "7 / 2"]


class Held:
    """A tool body that runs until the test releases it. A request that comes back while
    ``finished`` is unset did not wait for the tool (no clock involved)."""

    def __init__(self) -> None:
        self.release, self.finished = threading.Event(), threading.Event()

    def __call__(self, expression: str) -> str:
        self.release.wait(timeout=60)
        self.finished.set()
        return calculator(expression)


SLOW, PAUSE = Held(), Held()


def _register() -> None:
    """Tools whose enums leave the random model few choices, so outcomes are checkable."""
    fixed = {"type": "string", "enum": EXPRESSIONS}

    def broken(expression: str) -> str:
        raise ValueError("the tool broke")

    schema = {"type": "object", "properties": {"expression": fixed}, "required": ["expression"]}
    free = {"type": "string", "minLength": 1, "maxLength": 12}
    short = {"type": "object", "properties": {"expression": free}, "required": ["expression"]}
    for tool in (
        Tool("fixed_calc", "calculator on fixed expressions", schema, calculator),
        Tool("broken_calc", "always fails", schema, broken),
        Tool("slow_calc", "too slow", schema, SLOW, timeout_s=0.3),
        Tool("short_calc", "calculator on short expressions", short, calculator),
        Tool("pause_calc", "calculator after a pause", schema, PAUSE),
    ):
        register_tool(tool, replace=True)


def _task(name: str, tools: list[str], result: str = "answer") -> TaskSpec:
    return dataclasses.replace(
        SUITE.task("arithmetic"),
        name=name,
        tools=ToolUse(tools, result),  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def engine(served: Path) -> Engine:
    _register()
    engine = Engine.load(served, max_batch=4)
    for name, tools, result in (
        ("calc", ["fixed_calc"], "answer"),
        ("calc_ctx", ["fixed_calc"], "context"),
        ("broken", ["broken_calc"], "answer"),
        ("slow", ["slow_calc"], "answer"),
        ("free", ["short_calc"], "answer"),
        ("long", ["calculator"], "answer"),
        ("pause_ctx", ["pause_calc"], "context"),
    ):
        engine.add_task(_task(name, tools, result))
    yield engine
    engine.close()


def test_result_is_the_answer(engine: Engine) -> None:
    outputs = [engine.run("calc", x) for x in ("What is 2 plus 3?", "hello", "7 over 2")]
    for out in outputs:
        call = out.tool_call
        assert call is not None and call.name == "fixed_calc" and call.error is None
        assert parse_call(engine.tokenizer.decode(list(out.token_ids))) == (
            "fixed_calc",
            call.arguments,
        )
        expected = str(evaluate(call.arguments["expression"]))
        assert out.valid and out.text == call.result == out.value == expected
        assert out.latency_s >= call.seconds


def test_result_in_context_then_the_model_answers(engine: Engine) -> None:
    out = engine.run("calc_ctx", "What is 4 times 5?")
    call = out.tool_call
    assert call is not None and call.result == str(evaluate(call.arguments["expression"]))
    call_tokens = len(engine.tokenizer.encode(engine.tokenizer.decode(list(out.token_ids))))
    assert out.output_tokens == len(out.token_ids) and out.output_tokens > 0
    assert out.text != call.result or call_tokens  # the answer is the model's own text
    router = engine._serving().router
    route = router.route("calc_ctx", "What is 4 times 5?", None, None)
    after = router.after_call(route, [1, 2], "20")
    assert after.prompt[: len(route.prompt)] == route.prompt
    assert engine.tokenizer.decode(after.prompt[len(route.prompt) + 2 :]) == "\nResult: 20\n"
    assert after.first_line and not after.tools and after.prefix_len == route.prefix_len


def test_failing_and_slow_tools_make_the_output_invalid_with_the_reason(engine: Engine) -> None:
    out = engine.run("broken", "What is 2 plus 3?")
    assert not out.valid and out.value is None
    assert out.error == "tool broken_calc: ValueError: the tool broke"
    assert out.tool_call is not None and out.tool_call.result is None
    try:
        out = engine.run("slow", "What is 2 plus 3?")
        assert not out.valid and "no result within 0.3 s" in str(out.error)
        assert not SLOW.finished.is_set()  # the answer came while the tool still ran
    finally:
        SLOW.release.set()


def test_a_free_string_argument_is_constrained_to_the_call_shape(engine: Engine) -> None:
    # The random model writes some expression: the call is always well formed, and the
    # calculator either computes it or says why not.
    for text in ("What is 2 plus 3?", "Solve 2*x = 4 for x."):
        out = engine.run("free", text)
        call = out.tool_call
        assert call is not None and call.name == "short_calc"
        assert isinstance(call.arguments["expression"], str)
        assert out.valid == (call.error is None)
        assert out.valid or str(out.error).startswith("tool short_calc")
    out = engine.run("long", "What is 2 plus 3?", max_new_tokens=20)
    assert not out.valid and "cut at 20 tokens" in str(out.error)


def test_unknown_tools_are_refused_when_the_task_is_added(engine: Engine) -> None:
    with pytest.raises(tinyllm.errors.ConfigError, match="unknown tool 'nope'"):
        engine.add_task(_task("nope_task", ["nope"]))


def test_unconstrained_calls_are_checked(served: Path) -> None:
    _register()
    free = Engine.load(served, max_batch=2, constrain=False)
    free.add_task(_task("calc", ["fixed_calc"]))
    out = free.run("calc", "What is 2 plus 3?", max_new_tokens=12)
    free.close()
    assert not out.valid  # the random model writes no valid call on its own
    assert out.tool_call is not None and out.tool_call.error


def test_raw_calls_in_process_are_checked_not_run(engine: Engine) -> None:
    out = engine.run("broken", "What is 2 plus 3?", execute_tools=False)
    assert out.valid and out.tool_call is None  # the broken tool never ran
    assert (
        out.value["name"] == "broken_calc" and out.value["arguments"]["expression"] in EXPRESSIONS
    )
    assert parse_call(out.text) == (out.value["name"], out.value["arguments"])


def test_streamed_answer_is_the_tool_result(engine: Engine) -> None:
    stream = engine.stream_task("calc", "What is 2 plus 3?")
    text = "".join(stream)
    assert (
        stream.output is not None
        and text == stream.output.text == engine.run("calc", "What is 2 plus 3?").text
    )


def test_http_serves_tool_tasks_like_the_engine(engine: Engine) -> None:
    import json

    import openai

    from tinyllm.runtime.openai_app import BackgroundServer, create_app

    text = "What is 2 plus 3?"
    messages = [{"role": "user", "content": text}]
    want = engine.run("calc", text)
    with BackgroundServer(create_app(engine)) as server:
        c = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)
        got = c.chat.completions.create(model="calc", messages=messages)
        tool = {"type": "function", "function": {"name": "fixed_calc", "parameters": {}}}
        raw = c.chat.completions.create(model="calc", messages=messages, tools=[tool])
        with pytest.raises(openai.BadRequestError, match="must list the tools of 'calc'"):
            other = {"type": "function", "function": {"name": "calculator"}}
            c.chat.completions.create(model="calc", messages=messages, tools=[other])
        with pytest.raises(openai.BadRequestError, match="streaming tool calls"):
            c.chat.completions.create(model="calc", messages=messages, tools=[tool], stream=True)
    assert got.choices[0].message.content == want.text
    extra = got.model_extra["tinyllm"]
    assert extra["valid"] and extra["value"] == want.value
    assert extra["tool_call"]["arguments"] == want.tool_call.arguments
    assert extra["tool_call"]["result"] == want.text
    choice = raw.choices[0]
    call = engine.run("calc", text, execute_tools=False)
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls[0].function.name == "fixed_calc"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == call.value["arguments"]


def test_wire_refuses_tool_messages_and_bad_tool_lists() -> None:
    from tinyllm.runtime import openai_wire as wire

    base = {"model": "calc", "messages": [{"role": "user", "content": "2+3"}]}
    tool = {"type": "function", "function": {"name": "fixed_calc"}}
    assert wire.parse_request("chat", {**base, "tools": [tool]}).tools == ("fixed_calc",)
    bad = [
        ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "5"}]},
         "'tool' messages are not taken"),
        ({"tools": [{"type": "function"}]}, "'tools' must be a list"),
        ({"tools": "calc"}, "'tools' must be a list"),
        ({"tools": [tool], "tool_choice": "none"}, "'auto' or 'required'"),
        ({"tool_choice": "required"}, "'tool_choice' needs 'tools'"),
    ]  # fmt: skip
    for extra, message in bad:
        with pytest.raises(wire.WireError, match=message):
            wire.parse_request("chat", {**base, **extra})
    with pytest.raises(wire.WireError, match="are for /v1/chat/completions"):
        wire.parse_request("completion", {"model": "calc", "prompt": "x", "tools": [tool]})


def test_the_deadline_carries_into_the_answer_after_the_call(engine: Engine) -> None:
    server = engine._serving()
    runner = server.tool_runner
    seen: list[float | None] = []

    def recording(route, deadline_s, sink, wait):  # type: ignore[no-untyped-def]
        seen.append(deadline_s)
        return server.submit(route, deadline_s, sink, wait)

    runner.submit = recording
    try:
        engine.run("calc_ctx", "What is 4 times 5?")
        start = time.monotonic()
        out = engine.run("calc_ctx", "What is 4 times 5?", deadline_s=60)
        assert out.tool_call is not None and out.tool_call.result is not None
        # the second request got what was left of the first one's 60 s, not no deadline
        assert seen[0] is None and seen[1] is not None
        assert 0 < seen[1] <= 60 - (time.monotonic() - start) + out.latency_s
        assert seen[1] < 60
        # the tool runs until released: a 0.3 s deadline passes during the call (its time
        # limit is cut to what is left; or during the call's decoding on a slow machine),
        # the request fails without waiting for the tool, and no answer is decoded for it
        with pytest.raises(tinyllm.errors.DeadlineExceededError, match="passed its deadline"):
            engine.run("pause_ctx", "What is 4 times 5?", deadline_s=0.3)
        assert len(seen) == 2 and not PAUSE.finished.is_set()
    finally:
        PAUSE.release.set()
        runner.submit = server.submit


def test_plain_shots_of_a_tool_task_are_shown_as_calls(engine: Engine) -> None:
    from tinyllm.tasks import Example

    router = engine._serving().router
    shots = [Example("What is 2 plus 3?", "5")]
    route = router.route("long", "What is 4 times 5?", None, None, shots=shots)
    prompt = engine.tokenizer.decode(route.prompt)
    assert '{"name": "calculator", "arguments": {"expression": "2 + 3"}}' in prompt
    out = engine.run("long", "What is 4 times 5?", shots=shots, max_new_tokens=40)
    assert out.tool_call is not None  # the engine's few-shot path runs the same way
    with pytest.raises(tinyllm.errors.ConfigError, match="cannot be traced"):
        router.route("long", "x", None, None, shots=[Example("Tell me a joke.", "7")])
