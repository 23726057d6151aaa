"""Call targets: teacher answers traced to tool calls, bad traces rejected with the reason."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from callsuite import sums_targets, sums_task

from tinyllm.distill.calltargets import call_end, check_method, sampled_calls, trace, with_calls
from tinyllm.distill.sft import encode, prompt_text
from tinyllm.errors import ConfigError
from tinyllm.evaluation import evaluate_task
from tinyllm.tasks import DataSpec, Example, OutputSpec, Suite, TaskSpec, ToolUse
from tinyllm.toolcalling import answers_after_calls, call_shots, execute_call, target_spans
from tinyllm.tools import parse_call
from tinyllm.torchkit import IGNORE_INDEX

CALL_2_3 = '{"name": "calculator", "arguments": {"expression": "2 + 3"}}'
CALL_6_7 = '{"name": "calculator", "arguments": {"expression": "6 * 7"}}'


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
    # No call ran: nothing is continued (a generator given no prompts may fail).
    assert answers_after_calls(_task("context"), ["x", "y"], more) == ["", ""]
    assert len(seen) == 1


def test_grpo_with_the_result_in_context_is_refused_on_trl() -> None:
    for backend in ("own", "trl"):
        check_method("sft", [_task(), _task("context")], backend)
        check_method("kd", [_task(), _task("context")], backend)
        check_method("grpo", [_task()], backend)  # the reward is the executed call's result
    check_method("grpo", [_task("context")], "own")  # the answer after the result
    with pytest.raises(ConfigError, match=r"context \(arith\) is built on our loop only"):
        check_method("grpo", [_task("context")], "trl")
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


def test_training_masks_the_result_the_runtime_inserts(tiny_model: Any) -> None:
    tok = tiny_model.tokenizer
    task = sums_task("context")
    (ex,) = sums_targets("context", 1)  # 2 plus 3
    (enc,) = encode(tok, task, [ex], max_len=256)

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    call, result, answer = ids(CALL_2_3), ids("\nResult: 5\n"), ids("5" + tok.eos_token)
    prompt = ids(prompt_text(tok, task, ex.input))
    # Tokenized as the runtime does: the written call, then the result text on its own.
    assert enc.input_ids == prompt + call + result + answer
    hidden = [IGNORE_INDEX] * len(prompt)
    assert enc.labels == hidden + call + [IGNORE_INDEX] * len(result) + answer
    # With the result as the answer the whole target (the call and eos) is trained.
    (plain,) = encode(tok, sums_task("answer"), sums_targets("answer", 1), max_len=256)
    assert plain.labels == hidden + ids(CALL_2_3 + tok.eos_token)


def test_target_spans_cut_call_result_and_answer() -> None:
    task = sums_task("context")
    two_lines = CALL_2_3 + "\nResult: a\nb\nthe answer"
    assert target_spans(task, two_lines, "a\nb") == [
        (CALL_2_3, True),
        ("\nResult: a\nb\n", False),
        ("the answer", True),
    ]
    assert target_spans(task, two_lines)[1:] == [("\nResult: a\n", False), ("b\nthe answer", True)]
    assert target_spans(sums_task("answer"), CALL_2_3) == [(CALL_2_3, True)]
    for broken in (CALL_2_3, CALL_2_3 + "\nResult: 5", "{\n}\nResult: 5\n5"):
        with pytest.raises(ConfigError, match=r"the call, '\\nResult: RESULT\\n' and the answer"):
            target_spans(task, broken)


class CharTokenizer:
    """One token per character (ids are code points), eos 0: texts and tokens line up."""

    eos_token_id = pad_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids if i or not skip_special_tokens)


def test_call_end_stops_where_the_json_object_ends() -> None:
    tok = CharTokenizer()
    ids = tok(" " + CALL_2_3 + "\nResult: 9")["input_ids"]
    assert call_end(tok, ids) == 1 + len(CALL_2_3)
    unfinished = tok('{"name": "calculator", "arguments": {')["input_ids"]
    assert call_end(tok, unfinished) == len(unfinished)
    assert call_end(tok, tok("42 and more")["input_ids"]) == len("42 and more")


def test_on_policy_calls_are_executed_and_the_result_inserted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import tinyllm.torchkit as torchkit

    tok = CharTokenizer()
    rounds: list[tuple[list[list[int]], int]] = []
    scripted = [
        [CALL_6_7 + "\nResult: 99\nmore", "nonsense", CALL_2_3 + "}"],  # the calls
        ["42\0", "5\0"],  # the answers, after the results
    ]

    def sample(model, tokenizer, prompts, max_new_tokens, temperature=1.0):  # type: ignore[no-untyped-def]
        rounds.append((list(prompts), max_new_tokens))
        return [tok(t)["input_ids"] for t in scripted[len(rounds) - 1]]

    monkeypatch.setattr(torchkit, "sample_continuations", sample)
    prompts = [[1, 2], [3], [4, 5, 6]]
    items = sampled_calls(None, tok, sums_task("context"), prompts)
    assert [n for _, n in rounds] == [48, 8]  # tools.max_call_tokens, then the answer's
    result_42, result_5 = tok("\nResult: 42\n")["input_ids"], tok("\nResult: 5\n")["input_ids"]
    call_67, call_23 = tok(CALL_6_7)["input_ids"], tok(CALL_2_3)["input_ids"]
    assert rounds[1][0] == [[1, 2, *call_67, *result_42], [4, 5, 6, *call_23, *result_5]]
    answer_42 = tok("42\0")["input_ids"]
    assert items[0].input_ids == [1, 2, *call_67, *result_42, *answer_42]
    assert items[0].labels == [IGNORE_INDEX] * 2 + call_67 + [IGNORE_INDEX] * 12 + answer_42
    assert len(result_42) == 12
    # A call that does not run gets no result and no answer: only what it wrote.
    assert items[1].input_ids == [3, *tok("nonsense")["input_ids"]]
    assert items[1].labels == [IGNORE_INDEX, *tok("nonsense")["input_ids"]]
    # The call is cut where its JSON ends (the stray "}" is dropped).
    assert items[2].input_ids == [4, 5, 6, *call_23, *result_5, *tok("5\0")["input_ids"]]
    # With the result as the answer the sampled call is the whole sequence.
    rounds.clear()
    scripted[0] = ["x", "y", "z"]
    items = sampled_calls(None, tok, sums_task("answer"), prompts)
    assert len(rounds) == 1 and items[0].input_ids == [1, 2, ord("x")]
    assert items[0].labels == [IGNORE_INDEX, IGNORE_INDEX, ord("x")]
