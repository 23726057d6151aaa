"""The HTTP server against the official ``openai`` client and raw HTTP: wire format, errors,
disconnects. A scripted engine makes every error path reachable on demand."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tinyllm.errors import (
    ConfigError,
    DeadlineExceededError,
    EngineClosedError,
    PromptTooLongError,
    QueueFullError,
    TinyLLMError,
)
from tinyllm.runtime.access import ServerLimits, check_bind
from tinyllm.runtime.openai_app import BackgroundServer, create_app

SCRIPTED = {
    "queue-full": QueueFullError("the queue is full (64 waiting); retry later"),
    "too-long": PromptTooLongError("the prompt has 9999 tokens; the context is 256"),
    "closed": EngineClosedError("the engine is shutting down"),
    "deadline": DeadlineExceededError("the request missed its deadline of 0.1 s"),
    "engine-fail": TinyLLMError("the engine step failed: boom"),
}
KEY = "sk-tinyllm-test-key"


@dataclass
class Output:
    task: str
    text: str
    value: Any
    valid: bool
    error: str | None
    prompt_tokens: int
    output_tokens: int
    ttft_s: float
    latency_s: float
    finish_reason: str


class Stream:
    """Async iterator of words; records whether it was closed before its end."""

    def __init__(self, engine: ScriptedEngine, task: str, text: str, delay: float) -> None:
        self.engine, self.task, self.text, self.delay = engine, task, text, delay
        self.words = text.upper().split() if text != "forever" else None
        self.sent = 0
        self.output: Output | None = None
        self.closed = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> str:
        if self.text in SCRIPTED:
            raise SCRIPTED[self.text]
        if self.words is not None and self.sent >= len(self.words):
            self.output = self.engine.output(self.task, self.text)
            raise StopAsyncIteration
        await asyncio.sleep(self.delay)
        self.sent += 1
        self.engine.generated += 1
        return ("" if self.sent == 1 else " ") + (self.words[self.sent - 1] if self.words else "x")

    async def aclose(self) -> None:
        self.closed = True
        if self.output is None:
            self.engine.cancelled.append(self.text)


class ScriptedEngine:
    """The serving engine's interface; upper-cases the input, scripted errors by input."""

    def __init__(self) -> None:
        self.tasks = {"shout": object(), "echo": object()}
        self.cancelled: list[str] = []
        self.generated = 0
        self.closed = False
        self.options: list[dict[str, Any]] = []
        self.streams: list[Stream] = []
        self.entered = threading.Event()  # a "block" request reached the engine
        self.release = threading.Event()  # lets it finish

    def output(self, task: str, text: str) -> Output:
        words = text.upper().split()
        return Output(task, " ".join(words), words, True, None, len(text.split()) + 3,
                      len(words), 0.001, 0.002, "stop")  # fmt: skip

    async def arun(self, task: str, text: str, **options: Any) -> Output:
        assert set(options) == {"max_new_tokens", "temperature", "deadline_s"}
        self.options.append(options)
        if text in SCRIPTED:
            raise SCRIPTED[text]
        if text == "block":
            self.entered.set()
            assert await asyncio.to_thread(self.release.wait, 30)
        out = self.output(task, text)
        if options["max_new_tokens"] is not None and out.output_tokens > options["max_new_tokens"]:
            kept = text.upper().split()[: options["max_new_tokens"]]
            out.text, out.output_tokens, out.finish_reason = " ".join(kept), len(kept), "length"
        return out

    def astream_task(self, task: str, text: str, **options: Any) -> Stream:
        self.streams.append(Stream(self, task, text, 0.01 if text != "forever" else 0.05))
        return self.streams[-1]

    def stats(self) -> dict[str, Any]:
        return {"queue_depth": 3, "closed": self.closed, "name": "scripted"}

    def close(self, drain: bool = True) -> None:
        self.closed = True


@pytest.fixture()
def scripted() -> Iterator[tuple[ScriptedEngine, str]]:
    engine = ScriptedEngine()
    with BackgroundServer(create_app(engine, max_body_bytes=4096)) as server:
        yield engine, server.url


def client(url: str, key: str = "unused", **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30, **kwargs)


def open_stream(url: str, body: dict[str, Any], events: int = 1) -> socket.socket:
    """A raw streaming request, read until ``events`` events arrived (10 s timeout)."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    received = b""
    while received.count(b"data: ") < events:  # headers, then the events
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the stream early: {received!r}"
        received += chunk
    return sock


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds (fails after ``timeout`` seconds)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting for a condition"
        time.sleep(0.01)


def raw(url: str, method: str, path: str, body: bytes | None = None, headers: Any = None):
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def test_models_chat_and_completions_with_the_openai_client(scripted) -> None:
    _, url = scripted
    c = client(url)
    assert sorted(m.id for m in c.models.list()) == ["echo", "shout"]
    chat = c.chat.completions.create(
        model="shout",
        messages=[
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": "not this one"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "the room was clean"},
        ],
    )
    assert chat.object == "chat.completion" and chat.model == "shout"
    assert chat.choices[0].message.content == "THE ROOM WAS CLEAN"
    assert chat.choices[0].finish_reason == "stop"
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (7, 4)
    assert chat.usage.total_tokens == 11
    assert chat.model_extra["tinyllm"]["value"] == ["THE", "ROOM", "WAS", "CLEAN"]
    done = c.completions.create(model="echo", prompt="one two three", max_tokens=2)
    assert done.object == "text_completion"
    assert done.choices[0].text == "ONE TWO" and done.choices[0].finish_reason == "length"


def test_streaming_chat_and_completion(scripted) -> None:
    _, url = scripted
    c = client(url)
    chunks = list(
        c.chat.completions.create(
            model="shout",
            messages=[{"role": "user", "content": "a b c"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "A B C"
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finals[-1] == "stop" and finals[:-1] == [None] * (len(finals) - 1)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert len({ch.id for ch in chunks}) == 1
    pieces = list(c.completions.create(model="echo", prompt="x y", stream=True))
    assert "".join(p.choices[0].text for p in pieces) == "X Y"


def test_unknown_task_as_model_is_404_with_openai_error(scripted) -> None:
    _, url = scripted
    with pytest.raises(openai.NotFoundError) as info:
        client(url).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found" and "echo, shout" in info.value.message


@pytest.mark.parametrize(
    ("text", "error", "status", "code"),
    [
        ("queue-full", openai.RateLimitError, 429, "queue_full"),
        ("too-long", openai.BadRequestError, 400, "context_length_exceeded"),
        ("closed", openai.InternalServerError, 503, "engine_closed"),
        ("deadline", openai.InternalServerError, 504, "deadline_exceeded"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_engine_errors_map_to_http_status(scripted, text, error, status, code, stream) -> None:
    _, url = scripted
    with pytest.raises(error) as info:
        client(url).chat.completions.create(
            model="shout", messages=[{"role": "user", "content": text}], stream=stream
        )
    assert info.value.status_code == status and info.value.code == code
    assert str(SCRIPTED[text]) in info.value.message
    if status == 429:
        assert info.value.response.headers["retry-after"] == "1"


def test_bad_bodies_are_clean_400_and_413(scripted) -> None:
    _, url = scripted
    path = "/v1/chat/completions"
    resp, data = raw(url, "POST", path, b"{not json", {"content-type": "application/json"})
    assert resp.status == 400 and json.loads(data)["error"]["code"] == "invalid_json"
    resp, data = raw(url, "POST", path, json.dumps({"model": "shout"}).encode())
    assert resp.status == 400 and json.loads(data)["error"]["param"] == "messages"
    resp, data = raw(url, "POST", path, json.dumps([1, 2]).encode())
    assert resp.status == 400
    big = json.dumps({"model": "shout", "messages": [{"role": "user", "content": "x" * 5000}]})
    resp, data = raw(url, "POST", path, big.encode())
    assert resp.status == 413 and json.loads(data)["error"]["code"] == "request_too_large"
    body = {"model": "shout", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    resp, data = raw(url, "POST", path, json.dumps(body).encode())
    assert resp.status == 400 and json.loads(data)["error"]["param"] == "n"


def test_oversized_chunked_body_is_refused(scripted) -> None:
    _, url = scripted
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    parts = (b"x" * 1000 for _ in range(10))  # no Content-Length: counted while read
    conn.request("POST", "/v1/completions", body=parts, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()


def test_client_disconnect_mid_stream_cancels_the_request(scripted) -> None:
    engine, url = scripted
    body = {"model": "shout", "messages": [{"role": "user", "content": "forever"}], "stream": True}
    open_stream(url, body).close()
    wait_for(lambda: engine.cancelled)
    assert engine.cancelled == ["forever"]
    assert engine.streams[-1].closed  # the server can no longer advance it
    _, metrics = raw(url, "GET", "/metrics")
    assert "tinyllm_client_disconnects_total 1" in metrics.decode()


def test_health_and_metrics(scripted) -> None:
    engine, url = scripted
    client(url).completions.create(model="echo", prompt="a b")
    resp, data = raw(url, "GET", "/health")
    assert resp.status == 200 and json.loads(data) == {"status": "ok", "tasks": 2}
    _, metrics = raw(url, "GET", "/metrics")
    text = metrics.decode()
    assert 'tinyllm_requests_total{task="echo",status="200"} 1' in text
    assert 'tinyllm_tokens_total{task="echo",kind="completion"} 2' in text
    assert 'tinyllm_request_duration_seconds_count{task="echo"} 1' in text
    assert "tinyllm_engine_queue_depth 3" in text and "engine_name" not in text
    engine.closed = True
    resp, _ = raw(url, "GET", "/health")
    assert resp.status == 503


def test_binds_loopback_by_default() -> None:
    from tinyllm.runtime.openai_app import DEFAULT_HOST

    server = BackgroundServer(create_app(ScriptedEngine()))
    assert server.host == DEFAULT_HOST == "127.0.0.1"


def test_shutdown_lets_requests_in_flight_finish() -> None:
    engine = ScriptedEngine()
    server = BackgroundServer(create_app(engine, close_engine=True)).start()
    results: list[Any] = []
    call = threading.Thread(
        target=lambda: results.append(
            client(server.url).completions.create(model="echo", prompt="block")
        )
    )
    call.start()
    assert engine.entered.wait(10)  # the request is in flight
    stopping = threading.Thread(target=server.stop)
    stopping.start()
    wait_for(lambda: server.server.should_exit)
    engine.release.set()
    stopping.join(30)
    call.join(30)
    assert results[0].choices[0].text == "BLOCK"
    assert engine.closed  # the app's shutdown closed (drained) the engine


@pytest.fixture(scope="module")
def real(served) -> Iterator[tuple[Any, str]]:
    """The real engine (tiny-qwen2 serving sentiment, booking, rewrite) behind the server."""
    from tinyllm.runtime import Engine

    engine = Engine.load(served, max_batch=4)
    app = create_app(engine, close_engine=True, base_model="base")
    with BackgroundServer(app) as server:
        yield engine, server.url


def test_real_engine_with_the_openai_client(real) -> None:
    engine, url = real
    c = client(url)
    assert [m.id for m in c.models.list()] == ["booking", "rewrite", "sentiment", "base"]
    text = "The room was spotless"
    want = engine.run("sentiment", text)
    got = c.chat.completions.create(model="sentiment", messages=[{"role": "user", "content": text}])
    assert got.choices[0].message.content == want.text
    assert got.model_extra["tinyllm"] == {"value": want.value, "valid": want.valid, "error": None}
    assert got.usage.prompt_tokens == want.prompt_tokens > 0
    assert got.usage.completion_tokens == want.output_tokens
    alone = engine.run("rewrite", "cheap flights boston", max_new_tokens=12)
    streamed = c.chat.completions.create(
        model="rewrite",
        messages=[{"role": "user", "content": "cheap flights boston"}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(streamed)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == alone.text
    assert chunks[-2].choices[0].finish_reason == alone.finish_reason
    assert chunks[-1].usage.completion_tokens == alone.output_tokens
    assert chunks[-1].usage.prompt_tokens == alone.prompt_tokens
    done = c.completions.create(model="rewrite", prompt="cheap flights boston", max_tokens=12)
    assert done.choices[0].text == alone.text
    with pytest.raises(openai.NotFoundError):
        c.completions.create(model="intent", prompt="hi")


def test_real_engine_plain_completion_on_the_base_model(real) -> None:
    from tinyllm.runtime import GenerationConfig

    engine, url = real
    want = engine.complete("Once upon", GenerationConfig(max_new_tokens=8, ignore_eos=True))
    got = client(url).completions.create(
        model="base", prompt="Once upon", max_tokens=8, extra_body={"ignore_eos": True}
    )
    assert got.choices[0].text == want.text and got.usage.completion_tokens == 8
    assert got.choices[0].finish_reason == "length"
    with pytest.raises(openai.BadRequestError) as info:
        client(url).completions.create(model="base", prompt="x", extra_body={"stop": [1]})
    assert info.value.code is None and "stop" in info.value.message


def test_real_engine_stops_generating_for_a_disconnected_stream(real) -> None:
    engine, url = real
    before = engine.stats()
    body = {"model": "base", "prompt": "a", "max_tokens": 200, "stream": True, "ignore_eos": True}
    open_stream(url, body, events=3).close()  # the role chunk and two text pieces
    wait_for(lambda: engine.stats()["cancelled"] != before["cancelled"])
    after = engine.stats()
    # Cancelled (not completed with its 200 tokens), and its batch row is free again.
    assert after["cancelled"] == before["cancelled"] + 1 and after["running"] == 0
    assert after["completed"] == before["completed"]


def test_load_500_requests_in_process_and_over_http_none_lost(real, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import load_test

    engine, url = real
    report = load_test.load(engine, url, requests=250, concurrency=32)
    for way in ("in_process", "http"):
        r = report[way]
        assert (r["lost"], r["duplicated"], r["mismatched"]) == (0, 0, 0), r
        assert sum(r["outcomes"].values()) == 250, r
    counted = report["engine"]
    # Every accepted request ended exactly once; refusals (if any) were counted as such.
    assert counted["submitted"] == counted["completed"] + counted["failed"] + counted["cancelled"]
    ok = report["in_process"]["outcomes"].get("ok", 0) + report["http"]["outcomes"].get("ok", 0)
    assert counted["completed"] == ok


def test_tinyllm_serve_command_serves_then_stops_on_sigint(served) -> None:
    import signal
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "tinyllm"
    proc = subprocess.Popen(
        [str(cli), "serve", str(served), "--port", "0", "--max-batch", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # readiness: uvicorn prints the bound port once it listens
            lines.append(line)
            if "Uvicorn running on " in line:
                break
        else:
            pytest.fail("tinyllm serve exited before listening:\n" + "".join(lines))
        url = line.split("Uvicorn running on ")[1].split()[0]
        resp, data = raw(url, "GET", "/health")
        assert resp.status == 200 and json.loads(data)["tasks"] == 3
        models = [m.id for m in client(url).models.list()]
        assert models == ["booking", "rewrite", "sentiment", "base"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + out
    assert url.startswith("http://127.0.0.1:")


CHAT = {"model": "shout", "messages": [{"role": "user", "content": "hi there"}]}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"logit_bias": {"42": 10}}, "logit_bias"),
        ({"seed": 7}, "seed"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"n": 2}, "n"),
    ],
)
def test_what_the_server_does_not_do_is_a_400_naming_the_field(
    scripted, extra: dict, param: str
) -> None:
    _, url = scripted
    with pytest.raises(openai.BadRequestError) as info:
        client(url).chat.completions.create(**CHAT, **extra)
    assert info.value.status_code == 400 and info.value.param == param
    assert param in info.value.message


def test_completions_logprobs_and_echo_are_refused(scripted) -> None:
    _, url = scripted
    for extra, param in (({"logprobs": 2}, "logprobs"), ({"echo": True}, "echo")):
        with pytest.raises(openai.BadRequestError) as info:
            client(url).completions.create(model="echo", prompt="a b", **extra)
        assert info.value.param == param


def test_neutral_defaults_that_clients_send_are_accepted(scripted) -> None:
    _, url = scripted
    got = client(url).chat.completions.create(
        **CHAT,
        n=1,
        presence_penalty=0,
        frequency_penalty=0.0,
        logprobs=False,
        logit_bias={},
        tool_choice="none",
        response_format={"type": "text"},
        user="someone",
        top_p=1,
        stream=False,
        extra_body={"parallel_tool_calls": False, "store": False, "metadata": {"a": "b"}},
    )
    assert got.choices[0].message.content == "HI THERE"


def _post(url: str, body: bytes | dict, path: str = "/v1/chat/completions") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp, out = raw(url, "POST", path, data, {"content-type": "application/json"})
    return resp.status, json.loads(out)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            b'{"model": "shout", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": NaN}',
            None,
        ),
        (
            b'{"model": "shout", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": Infinity}',
            None,
        ),
        (
            b'{"model": "shout", "messages": [{"role": "user", "content": "x"}], '
            b'"temperature": 1e999}',  # valid JSON that parses as inf
            "temperature",
        ),
        ({**CHAT, "temperature": -0.5}, "temperature"),
        ({**CHAT, "top_p": 0}, "top_p"),
        ({**CHAT, "top_p": 1.5}, "top_p"),
        ({**CHAT, "top_p": "high"}, "top_p"),
        ({**CHAT, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "max_tokens": -3}, "max_tokens"),
        ({**CHAT, "top_p": 0.9}, "top_p"),  # valid, but only for the base model
        ({**CHAT, "stop": ["x"]}, "stop"),  # likewise
    ],
)
def test_bad_sampling_options_are_400(scripted, body: Any, param: str | None) -> None:
    engine, url = scripted
    status, data = _post(url, body)
    assert status == 400, data
    assert data["error"]["param"] == param
    if param is None:  # NaN and Infinity are not JSON
        assert data["error"]["code"] == "invalid_json"
    assert engine.options == []  # nothing reached the engine


def test_a_lone_surrogate_is_a_400_not_a_500(scripted) -> None:
    _, url = scripted
    lone = b'"a\\ud800b"'  # a JSON escape of half a surrogate pair
    for path, body, param in (
        (
            "/v1/chat/completions",
            b'{"model": "shout", "messages": [{"role": "user", "content": ' + lone + b"}]}",
            "messages",
        ),
        ("/v1/completions", b'{"model": "echo", "prompt": ' + lone + b"}", "prompt"),
        ("/v1/completions", b'{"model": ' + lone + b', "prompt": "x"}', "model"),
        ("/v1/completions", b'{"model": "echo", "prompt": "x", "stop": [' + lone + b"]}", "stop"),
    ):
        status, data = _post(url, body, path)
        assert (status, data["error"]["param"]) == (400, param), data
        assert "lone surrogate (U+D800" in data["error"]["message"]
    status, _ = _post(
        url, b'{"model": "shout", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    )  # a whole pair is fine
    assert status == 200


@pytest.mark.parametrize("stream", [False, True])
def test_an_engine_side_failure_is_a_500_server_error(
    scripted, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = scripted
    with pytest.raises(openai.InternalServerError) as info:
        client(url).chat.completions.create(
            model="shout", messages=[{"role": "user", "content": "engine-fail"}], stream=stream
        )
    assert info.value.status_code == 500 and info.value.type == "server_error"
    assert "the engine step failed: boom" in info.value.message
    # The server logs it with its traceback (the client gets one line): a soak keeps it.
    logged = [r for r in caplog.records if r.name == "tinyllm.runtime.openai_app"]
    assert len(logged) == 1 and "500 server_error for model 'shout'" in logged[0].getMessage()
    assert logged[0].exc_info and isinstance(logged[0].exc_info[1], TinyLLMError)


@pytest.fixture()
def keyed() -> Iterator[tuple[ScriptedEngine, str]]:
    engine = ScriptedEngine()
    with BackgroundServer(create_app(engine, api_key=KEY)) as server:
        yield engine, server.url


def test_api_key_right_wrong_and_missing_with_the_openai_client(keyed) -> None:
    engine, url = keyed
    got = client(url, KEY).chat.completions.create(**CHAT)
    assert got.choices[0].message.content == "HI THERE"
    assert [m.id for m in client(url, KEY).models.list()] == ["echo", "shout"]
    for c in (
        client(url, KEY + "x"),  # wrong key
        client(url, KEY[:-1]),  # a prefix of it
        client(url, default_headers={"Authorization": ""}),  # no key at all
    ):
        with pytest.raises(openai.AuthenticationError) as info:
            c.chat.completions.create(**CHAT)
        assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
        assert KEY not in info.value.message
        with pytest.raises(openai.AuthenticationError):
            c.models.list()
    assert len(engine.options) == 1  # only the authorized request reached the engine
    resp, _ = raw(url, "POST", "/v1/completions", b"{}")  # no header
    assert resp.status == 401 and resp.getheader("www-authenticate") == "Bearer"
    assert raw(url, "GET", "/metrics")[0].status == 401
    assert raw(url, "GET", "/metrics", headers={"Authorization": f"Bearer {KEY}"})[0].status == 200
    assert raw(url, "GET", "/health")[0].status == 200  # open to load balancers


def test_a_public_address_needs_a_key_unless_insecure(
    served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinyllm.cli import main

    monkeypatch.delenv("TINYLLM_API_KEY", raising=False)
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.com"):
        with pytest.raises(ConfigError, match=f"binding {host} makes the server reachable"):
            check_bind(host, None, insecure=False)
        check_bind(host, KEY, insecure=False)
        check_bind(host, None, insecure=True)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None, insecure=False)
    for bad in ("", "two words", "caf\u00e9"):
        with pytest.raises(ConfigError, match="API key must be"):
            check_bind("127.0.0.1", bad, insecure=False)
    with pytest.raises(SystemExit) as info:  # refused before the engine loads
        main(["serve", str(served), "--host", "0.0.0.0", "--port", "0"])
    assert info.value.code == 1
    assert "give an API key (--api-key KEY or $TINYLLM_API_KEY)" in capsys.readouterr().err


def test_stream_and_token_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = ScriptedEngine()
    limits = ServerLimits(max_streams=1, max_tokens=5, task_max_tokens={"echo": 50})
    with BackgroundServer(create_app(engine, limits=limits)) as server:
        url = server.url
        with pytest.raises(openai.BadRequestError) as info:
            client(url).chat.completions.create(**CHAT, max_tokens=6)
        assert info.value.param == "max_tokens" and "cap of 5 for 'shout'" in info.value.message
        done = client(url).completions.create(model="echo", prompt="a b", max_tokens=6)
        assert done.choices[0].text == "A B"  # echo's own cap is 50
        body = {**CHAT, "messages": [{"role": "user", "content": "forever"}], "stream": True}
        first = open_stream(url, body)
        with pytest.raises(openai.RateLimitError) as limited:
            list(client(url).chat.completions.create(**CHAT, stream=True))
        assert limited.value.code == "too_many_streams"
        first.close()
        wait_for(lambda: engine.cancelled == ["forever"])
        chunks = list(client(url).chat.completions.create(**CHAT, stream=True))  # a free slot
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    with pytest.raises(ConfigError, match="max_streams must be an integer >= 1"):
        ServerLimits(max_streams=0)
    with pytest.raises(ConfigError, match="request_timeout_s must be > 0"):
        ServerLimits(request_timeout_s=float("nan"))


def test_the_request_timeout_reaches_the_engine(scripted) -> None:
    engine = ScriptedEngine()
    with BackgroundServer(create_app(engine, limits=ServerLimits(request_timeout_s=7.5))) as s:
        client(s.url).chat.completions.create(**CHAT)
    assert engine.options[0]["deadline_s"] == 7.5
    default = ScriptedEngine()
    with BackgroundServer(create_app(default)) as s:
        client(s.url).chat.completions.create(**CHAT)
    assert default.options[0]["deadline_s"] == ServerLimits().request_timeout_s == 600.0


def test_connections_beyond_the_limit_get_503() -> None:
    engine = ScriptedEngine()
    with BackgroundServer(create_app(engine), max_connections=1) as server:
        results: list[Any] = []
        call = threading.Thread(
            target=lambda: results.append(
                client(server.url).completions.create(model="echo", prompt="block")
            )
        )
        call.start()
        assert engine.entered.wait(10)  # one connection is busy
        resp, _ = raw(server.url, "GET", "/health")
        assert resp.status == 503
        engine.release.set()
        call.join(30)
    assert results[0].choices[0].text == "BLOCK"


def test_real_engine_rejects_bad_options_in_process_and_over_http(real) -> None:
    engine, url = real
    for bad in ({"temperature": float("nan")}, {"temperature": float("inf")}):
        with pytest.raises(ConfigError, match="temperature must be a finite number"):
            engine.submit("sentiment", "fine", **bad)
    with pytest.raises(ConfigError, match="lone surrogate"):
        engine.submit("sentiment", "a\ud800b")
    status, data = _post(
        url, b'{"model": "sentiment", "messages": [{"role": "user", "content": "a\\udc00"}]}'
    )
    assert status == 400 and data["error"]["param"] == "messages"
    got = client(url).completions.create(
        model="base", prompt="Once", max_tokens=3, top_p=0.5, temperature=0.7
    )
    assert got.usage.completion_tokens <= 3  # top_p is honoured for the base model


def test_serve_passes_speculation_and_fast_forward_to_the_engine(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tinyllm serve --speculate N --no-fast-forward` loads the engine with them; without
    the options the engine keeps its defaults (off, and on where exact)."""
    import tinyllm.runtime.openai_app as openai_app
    from tinyllm.cli import main

    loaded: list[Any] = []

    def keep(engine: Any, **_: Any) -> Any:
        loaded.append(engine._serving().speculation)
        engine.close()
        return None

    monkeypatch.setattr(openai_app, "create_app", keep)
    monkeypatch.setattr(openai_app, "run_server", lambda *a, **k: None)
    main(["serve", str(served), "--port", "0", "--speculate", "6", "--no-fast-forward"])
    main(["serve", str(served), "--port", "0"])
    asked, default = loaded
    assert (asked.draft_tokens, asked.forced) == (6, False)
    assert (default.draft_tokens, default.forced) == (0, True)  # fp32: verify runs are exact
