"""The OpenAI-compatible teacher against a stub server on loopback speaking the wire format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_stub import OpenAIStub

from tinyllm import api
from tinyllm.distill.endpoint import OpenAITeacher, answer_tool, read_answer
from tinyllm.distill.labelling import label_task
from tinyllm.distill.teacher_specs import teacher_from_spec
from tinyllm.distill.teachers import TeacherError
from tinyllm.errors import ConfigError

SUITE = api.load_tasks("builtin")
SENTIMENT, BOOKING, DATES = SUITE.task("sentiment"), SUITE.task("booking"), SUITE.task("dates")


def teacher(stub: OpenAIStub, waits: list[float], **kwargs: Any) -> OpenAITeacher:
    kwargs.setdefault("timeout", 2.0)
    return OpenAITeacher(stub.base_url, "stub-model", sleep=waits.append, **kwargs)


def test_function_calling_round_trip(openai_stub: OpenAIStub, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    waits: list[float] = []
    got = teacher(openai_stub, waits).label(SENTIMENT, ["great", "meh"], k=3, temperature=0.7)
    assert got == [["negative", "neutral", "positive"]] * 2
    body = openai_stub.requests[0]
    assert body["model"] == "stub-model" and body["n"] == 3 and body["temperature"] == 0.7
    assert body["messages"][0] == {"role": "system", "content": SENTIMENT.instruction}
    assert body["messages"][-1] == {"role": "user", "content": "Text: great"}
    assert body["tool_choice"] == {"type": "function", "function": {"name": "submit_answer"}}
    enum = body["tools"][0]["function"]["parameters"]["properties"]["label"]["enum"]
    assert enum == ["negative", "neutral", "positive"]
    assert openai_stub.headers[0]["Authorization"] == "Bearer sk-test"
    assert waits == []


def test_json_tasks_send_their_schema_and_read_arguments(openai_stub: OpenAIStub) -> None:
    slots = {"city": "Oslo", "date": "2025-03-01", "guests": 2}
    openai_stub.answer = lambda body, i: json.dumps(slots)
    got = teacher(openai_stub, []).label(BOOKING, ["a table in Oslo"])
    assert got == [[json.dumps(slots)]]
    assert openai_stub.requests[0]["tools"][0]["function"]["parameters"] == BOOKING.output.schema


def test_answers_in_content_and_bad_arguments() -> None:
    assert read_answer(DATES, {"content": "2025-01-01T10:00\nbecause"}) == "2025-01-01T10:00"
    bad = {"tool_calls": [{"function": {"name": "submit_answer", "arguments": "{oops"}}]}
    assert read_answer(BOOKING, bad) == "{oops"  # the verifier rejects it as a candidate
    assert answer_tool(DATES)["function"]["parameters"]["required"] == ["answer"]


def test_429_honours_retry_after_then_succeeds(openai_stub: OpenAIStub) -> None:
    openai_stub.script = [("429", 7), ("500",)]
    waits: list[float] = []
    got = teacher(openai_stub, waits, backoff=0.25).label(SENTIMENT, ["x"])
    assert got == [["negative"]]
    assert len(openai_stub.requests) == 3
    assert waits[0] == 7.0 and 0.125 <= waits[1] <= 0.5  # Retry-After, then backoff 2**1


def test_timeouts_are_retried(openai_stub: OpenAIStub) -> None:
    openai_stub.script = [("slow", 1.0)]
    waits: list[float] = []
    got = teacher(openai_stub, waits, timeout=0.2).label(SENTIMENT, ["x"])
    assert got == [["negative"]] and len(waits) == 1


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (("malformed",), "malformed response \\(JSONDecodeError"),
        (("no_choices",), "malformed response \\(KeyError: 'choices'"),
        (("500",), "HTTP 500"),
        (("429", 0), "HTTP 429"),
    ],
)
def test_persistent_failures_give_a_clear_error_after_retries(
    openai_stub: OpenAIStub, action: tuple[Any, ...], message: str
) -> None:
    openai_stub.script = [action] * 3
    waits: list[float] = []
    with pytest.raises(TeacherError, match=f"gave up after 3 tries; last failure: {message}"):
        teacher(openai_stub, waits, max_retries=2).label(SENTIMENT, ["x"])
    assert len(openai_stub.requests) == 3 and len(waits) == 2


def test_client_errors_are_not_retried(openai_stub: OpenAIStub) -> None:
    openai_stub.script = [("401",)]
    with pytest.raises(TeacherError, match="HTTP 401 \\(set the API key variable\\)"):
        teacher(openai_stub, []).label(SENTIMENT, ["x"])
    assert len(openai_stub.requests) == 1


def test_unreachable_server_is_a_clear_error() -> None:
    t = OpenAITeacher("http://127.0.0.1:9/v1", "m", max_retries=1, sleep=lambda s: None)
    with pytest.raises(TeacherError, match="connection failed"):
        t.label(SENTIMENT, ["x"])


def test_rate_limit_spaces_requests(openai_stub: OpenAIStub) -> None:
    waits: list[float] = []
    teacher(openai_stub, waits, requests_per_second=4).label(SENTIMENT, ["a", "b", "c"])
    assert len(waits) == 2 and 0.2 < waits[0] <= 0.25 and waits[1] > waits[0]


def test_labelling_through_the_endpoint(openai_stub: OpenAIStub, tmp_path: Path) -> None:
    spec = f"openai:stub-model@{openai_stub.base_url}"
    t = teacher_from_spec(spec)
    stats = label_task(SENTIMENT, ["a", "b"], t, tmp_path, k=2, progress=False)
    assert stats.accepted == 2 and stats.teacher == spec


def test_bad_endpoint_configuration() -> None:
    with pytest.raises(ConfigError, match="must start with http"):
        OpenAITeacher("localhost:8000", "m")
    with pytest.raises(ConfigError, match="timeout"):
        OpenAITeacher("http://localhost", "m", timeout=0)
    with pytest.raises(ConfigError, match="requests_per_second"):
        OpenAITeacher("http://localhost", "m", requests_per_second=0)


def test_a_server_without_n_gets_one_request_per_candidate(openai_stub: OpenAIStub) -> None:
    openai_stub.script = [("reject_n",)]
    t = teacher(openai_stub, [])
    assert t.label(SENTIMENT, ["a", "b"], k=2) == [["negative", "negative"]] * 2
    assert [r.get("n") for r in openai_stub.requests] == [2, None, None, None, None]
    assert not t.supports_n


def test_tinyllm_serve_spec_sends_the_task_as_model(openai_stub: OpenAIStub) -> None:
    openai_stub.answer = lambda body, i: "Positive."
    t = teacher_from_spec(f"tinyllm:{openai_stub.base_url}")
    assert t.name == f"tinyllm:{openai_stub.base_url}"
    assert t.label(SENTIMENT, ["great food"]) == [["positive"]]
    body = openai_stub.requests[0]
    assert body["model"] == "sentiment" and "tools" not in body and "n" not in body
    assert body["messages"] == [{"role": "user", "content": "great food"}]


def test_a_call_to_another_function_is_a_clear_error() -> None:
    wrong = {"tool_calls": [{"function": {"name": "lookup", "arguments": '{"label": "positive"}'}}]}
    with pytest.raises(TeacherError, match="called the function 'lookup', not 'submit_answer'"):
        read_answer(SENTIMENT, wrong)
    for calls in (["not a call"], [{"function": "submit_answer"}]):
        with pytest.raises(TeacherError, match="malformed tool call"):
            read_answer(SENTIMENT, {"tool_calls": calls})
