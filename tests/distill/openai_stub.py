"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, for tests.

It speaks the real wire format: ``POST /v1/chat/completions`` with ``model``, ``messages``,
``n``, ``tools``/``tool_choice``; it answers a ``chat.completion`` object whose choices carry
``message.tool_calls[].function.arguments`` (a JSON string) when tools were sent, else
``message.content``; errors are ``{"error": {"message", "type", "param", "code"}}``.
Each request pops the next action of ``script`` (``ok`` once the script is empty):
``("429", retry_after)``, ``("500",)``, ``("slow", seconds)``, ``("malformed",)`` (a body
that is not JSON), ``("no_choices",)``, ``("401",)``, ``("reject_n",)`` (400 on ``n`` > 1,
as ``tinyllm serve`` answers).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any], int], str]


def _default_answer(body: dict[str, Any], index: int) -> str:
    """Arguments for the requested function: the first enum label, or a fixed string."""
    params = body["tools"][0]["function"]["parameters"] if body.get("tools") else {}
    label = params.get("properties", {}).get("label", {})
    if "enum" in label:
        return json.dumps({"label": label["enum"][index % len(label["enum"])]})
    return json.dumps({"answer": "stub answer"})


class OpenAIStub:
    """The server, its script of actions and the requests it received."""

    def __init__(self, answer: Answer = _default_answer) -> None:
        self.answer = answer
        self.script: list[tuple[Any, ...]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                stub.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The ``/v1`` base URL clients use."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def handle(self, http: BaseHTTPRequestHandler) -> None:
        length = int(http.headers.get("Content-Length", 0))
        body = json.loads(http.rfile.read(length))
        self.requests.append(body)
        self.headers.append(dict(http.headers))
        if http.path != "/v1/chat/completions":
            return self._send(http, 404, _error("Not found", "invalid_request_error"))
        action = self.script.pop(0) if self.script else ("ok",)
        kind = action[0]
        if kind == "429":
            return self._send(
                http,
                429,
                _error("Rate limit reached", "rate_limit_error"),
                {"Retry-After": str(action[1])},
            )
        if kind == "500":
            return self._send(http, 500, _error("The server had an error", "server_error"))
        if kind == "reject_n":  # as `tinyllm serve` does
            error = _error("only n=1 is supported", "invalid_request_error")
            error["error"]["param"] = "n"
            return self._send(http, 400, error)
        if kind == "401":
            return self._send(http, 401, _error("Incorrect API key", "invalid_request_error"))
        if kind == "malformed":
            return self._send(http, 200, b'{"id": "chatcmpl-1", "choices": [')
        if kind == "no_choices":
            return self._send(http, 200, {"id": "chatcmpl-1", "object": "chat.completion"})
        if kind == "slow":
            time.sleep(action[1])
        self._send(http, 200, self.completion(body))

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """A ``chat.completion`` object with ``n`` choices."""
        choices = []
        for i in range(body.get("n", 1)):
            text = self.answer(body, i)
            if body.get("tools"):
                name = body["tools"][0]["function"]["name"]
                call = {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": text},
                }
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [call],
                    "refusal": None,
                }
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": text, "refusal": None}
                finish = "stop"
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            )
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    @staticmethod
    def _send(
        http: BaseHTTPRequestHandler,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            http.send_response(status)
            http.send_header("Content-Type", "application/json")
            http.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                http.send_header(key, value)
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
