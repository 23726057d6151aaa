"""The HTTP server against the official ``openai`` client and raw HTTP: wire format, errors,
disconnects. A scripted engine makes every error path reachable on demand."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from tinyllm.errors import (
    DeadlineExceededError,
    EngineClosedError,
    PromptTooLongError,
    QueueFullError,
)
from tinyllm.runtime.http import BackgroundServer, create_app

SCRIPTED = {
    "queue-full": QueueFullError("the queue is full (64 waiting); retry later"),
    "too-long": PromptTooLongError("the prompt has 9999 tokens; the context is 256"),
    "closed": EngineClosedError("the engine is shutting down"),
    "deadline": DeadlineExceededError("the request missed its deadline of 0.1 s"),
}


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
        if self.output is None:
            self.engine.cancelled.append(self.text)


class ScriptedEngine:
    """The serving engine's interface; upper-cases the input, scripted errors by input."""

    def __init__(self) -> None:
        self.tasks = {"shout": object(), "echo": object()}
        self.cancelled: list[str] = []
        self.generated = 0
        self.closed = False

    def output(self, task: str, text: str) -> Output:
        words = text.upper().split()
        return Output(task, " ".join(words), words, True, None, len(text.split()) + 3,
                      len(words), 0.001, 0.002, "stop")  # fmt: skip

    async def arun(self, task: str, text: str, **options: Any) -> Output:
        assert set(options) == {"max_new_tokens", "temperature", "deadline_s"}
        if text in SCRIPTED:
            raise SCRIPTED[text]
        await asyncio.sleep(0.5 if text == "slow" else 0)
        out = self.output(task, text)
        if options["max_new_tokens"] is not None and out.output_tokens > options["max_new_tokens"]:
            kept = text.upper().split()[: options["max_new_tokens"]]
            out.text, out.output_tokens, out.finish_reason = " ".join(kept), len(kept), "length"
        return out

    def astream_task(self, task: str, text: str, **options: Any) -> Stream:
        return Stream(self, task, text, 0.01 if text != "forever" else 0.05)

    def stats(self) -> dict[str, Any]:
        return {"queue_depth": 3, "closed": self.closed, "name": "scripted"}

    def close(self, drain: bool = True) -> None:
        self.closed = True


@pytest.fixture()
def scripted() -> Iterator[tuple[ScriptedEngine, str]]:
    engine = ScriptedEngine()
    with BackgroundServer(create_app(engine, max_body_bytes=4096)) as server:
        yield engine, server.url


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=30)


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
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(
        {"model": "shout", "messages": [{"role": "user", "content": "forever"}], "stream": True}
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while b"data: " not in received:  # headers, then the first event
        received += sock.recv(4096)
    sock.close()
    deadline = time.monotonic() + 10
    while not engine.cancelled and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.cancelled == ["forever"]
    produced = engine.generated
    time.sleep(0.3)  # the stream yields every 0.05 s: it would have advanced if still running
    assert engine.generated == produced
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
    from tinyllm.runtime.http import DEFAULT_HOST

    server = BackgroundServer(create_app(ScriptedEngine()))
    assert server.host == DEFAULT_HOST == "127.0.0.1"


def test_shutdown_lets_requests_in_flight_finish() -> None:
    import threading

    engine = ScriptedEngine()
    server = BackgroundServer(create_app(engine, close_engine=True)).start()
    results: list[Any] = []
    call = threading.Thread(
        target=lambda: results.append(
            client(server.url).completions.create(model="echo", prompt="slow")
        )
    )
    call.start()
    time.sleep(0.2)  # the request is in flight
    server.stop()
    call.join()
    assert results[0].choices[0].text == "SLOW"
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
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(
        {"model": "base", "prompt": "a", "max_tokens": 200, "stream": True, "ignore_eos": True}
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while received.count(b"data: ") < 3:  # the role chunk and two text pieces
        received += sock.recv(4096)
    sock.close()
    deadline = time.monotonic() + 10
    while engine.stats()["cancelled"] == before["cancelled"] and time.monotonic() < deadline:
        time.sleep(0.02)
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

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = Path(sys.executable).parent / "tinyllm"
    proc = subprocess.Popen(
        [str(cli), "serve", str(served), "--port", str(port), "--max-batch", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                resp, data = raw(url, "GET", "/health")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.2)
        assert resp.status == 200 and json.loads(data)["tasks"] == 3
        models = [m.id for m in client(url).models.list()]
        assert models == ["booking", "rewrite", "sentiment", "base"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "Uvicorn running on http://127.0.0.1" in out
