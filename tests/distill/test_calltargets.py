"""Call targets: teacher answers traced to tool calls, bad traces rejected with the reason."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tinyllm.distill.calltargets import check_method, trace, with_calls
from tinyllm.errors import ConfigError
from tinyllm.evaluation import evaluate_task
from tinyllm.tasks import DataSpec, Example, OutputSpec, Suite, TaskSpec, ToolUse
from tinyllm.toolcalling import answers_after_calls, call_shots, execute_call
from tinyllm.tools import parse_call


def _task(result: str = "answer", verifiers: tuple[str, ...] = ("number",)) -> TaskSpec:
    return TaskSpec(
        name="arith",
        description="d",
        instruction="Call the calculator.",
        output=OutputSpec("text", max_new_tokens=8),
        metric="exact_match",
        data=DataSpec(builder="x"),
        verifiers=list(verifiers),
        tools=ToolUse(["calculator"], result),  # type: ignore[arg-type]
    )


def test_teacher_answers_become_call_targets_and_bad_traces_are_rejected() -> None:
    examples = [
        Example("What is 2 plus 3?", "5"),
        Example("Solve 8*c - 20 = 4 for c.", "3"),
        Example("What is 2 plus 3?", "6"),  # the teacher answered otherwise
        Example("Divide 3 by 0.", "1"),  # the tool fails
        Example("What is the meaning of life?", "42"),  # no expression
    ]
    logged: list[str] = []
    out = with_calls(_task(), examples, logged.append)
    assert [e.output for e in out] == [
        '{"name": "calculator", "arguments": {"expression": "2 + 3"}}',
        '{"name": "calculator", "arguments": {"expression": "8*c - 20 = 4"}}',
    ]
    assert out[0].meta["tool_call"]["result"] == "5" and out[0].meta["answer"] == "5"
    assert logged == [
        "arith: 2/5 examples traced to a tool call "
        "(rejected: tool failed: 2, teacher answered otherwise: 1)"
    ]
    with pytest.raises(ConfigError, match="no example could be traced"):
        with_calls(_task(), examples[2:])


def test_a_result_failing_the_verifier_is_rejected() -> None:
    task = _task(verifiers=("iso_datetime",))  # a number is not a date
    call, reason = trace(task, Example("What is 2 plus 3?", "5"))
    assert call is None and reason == "result failed the verifier"


def test_context_targets_carry_the_result_and_the_answer() -> None:
    (ex,) = with_calls(_task("context"), [Example("What is 7 divided by 2?", "7/2")])
    call, rest = ex.output.split("\n", 1)
    assert parse_call(call) == ("calculator", {"expression": "7 / 2"})
    assert rest == "Result: 7/2\n7/2"


def test_written_calls_are_executed_like_the_engine_does() -> None:
    task = _task()
    good = '{"name": "calculator", "arguments": {"expression": "6 * 7"}}'
    assert execute_call(task, good).result == "42"
    bad = execute_call(task, '{"name": "date_parser", "arguments": {}}')
    assert bad.result is None and "not one of ['calculator']" in str(bad.error)
    assert answers_after_calls(task, [good, "nonsense"], lambda ids, texts: []) == ["42", ""]
    seen: list[tuple[list[int], list[str]]] = []

    def more(ids: list[int], texts: list[str]) -> list[str]:
        seen.append((ids, texts))
        return ["the answer"] * len(ids)

    got = answers_after_calls(_task("context"), ["x", good], more)
    assert got == ["", "the answer"]
    assert seen == [([1], [good + "\nResult: 42\n"])]


def test_kd_and_grpo_in_context_on_calls_are_refused_until_built() -> None:
    check_method("sft", [_task(), _task("context")])
    check_method("grpo", [_task()])  # the reward is the executed call's result
    with pytest.raises(ConfigError, match="method 'kd' on tasks with tools \\(arith\\)"):
        check_method("kd", [_task()])
    with pytest.raises(ConfigError, match="'grpo' on tasks whose tool result goes in context"):
        check_method("grpo", [_task("context")])
    assert json.dumps(_task().to_dict()["tools"]) == (
        '{"names": ["calculator"], "result": "answer", "max_call_tokens": 96}'
    )


def test_few_shot_examples_of_a_tool_task_show_calls() -> None:
    plain = [
        Example("What is 2 plus 3?", "5"),
        Example("What is the meaning of life?", "42"),  # no call gives it
        Example("Solve 8*c - 20 = 4 for c.", "3"),
    ]
    shots = call_shots(_task(), plain, k=2)  # the first two that trace
    assert [s.input for s in shots] == [plain[0].input, plain[2].input]
    assert [parse_call(s.output)[1] for s in shots] == [
        {"expression": "2 + 3"},
        {"expression": "8*c - 20 = 4"},
    ]
    assert call_shots(_task(), shots) == shots  # calls already: kept as they are
    (ctx,) = call_shots(_task("context"), plain[:1])
    assert ctx.output == '{"name": "calculator", "arguments": {"expression": "2 + 3"}}' + (
        "\nResult: 5\n5"
    )
    assert call_shots(_task("context"), [ctx]) == [ctx]
    with pytest.raises(ConfigError, match=r"example 1 \('What is the meaning.*cannot be traced"):
        call_shots(_task(), plain)
    no_tools = dataclasses.replace(_task(), tools=None)
    assert call_shots(no_tools, plain) == plain


def test_evaluation_prompts_a_tool_task_with_call_shots(tmp_path: Path) -> None:
    rows = [{"input": f"What is {a} plus {b}?", "output": str(a + b)} for a, b in ((2, 3), (4, 9))]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = dataclasses.replace(
        _task(), data=DataSpec(train=str(data), validation=str(data), test=str(data))
    )
    seen: list[list[Example]] = []

    class Recorder:
        def answer(self, task, inputs, shots, done):  # type: ignore[no-untyped-def]
            seen.append(shots)
            return ["5"] * len(inputs)

    suite = Suite([task], tmp_path)
    result = evaluate_task(Recorder(), suite, task, few_shot=2, progress=False)
    assert result.n == 2 and len(seen[0]) == 2
    for shot in seen[0]:
        name, arguments = parse_call(shot.output)
        assert name == "calculator" and "plus" not in arguments["expression"]
