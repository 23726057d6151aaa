"""A teacher behind an OpenAI-compatible chat endpoint (``POST {base_url}/chat/completions``).

The task's output kind becomes one function the model must call: JSON tasks pass their
schema as the parameters, label tasks an enum, text tasks one string. The answer is read
from ``choices[i].message.tool_calls[0].function.arguments`` (or ``content`` when a server
answers in text). Timeouts, connection errors, 429 (``Retry-After`` honoured) and 5xx are
retried with exponential backoff and jitter; a response that is not the chat-completions
shape is retried too, then reported as a :class:`TeacherError`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tinyllm.distill.teachers import TeacherError, canonical_answer, check_k
from tinyllm.errors import ConfigError, missing_dependency
from tinyllm.tasks import TaskSpec, conversation

FUNCTION = "submit_answer"


class RetryableError(Exception):
    """A failure worth another try; ``wait`` is the server's Retry-After, if any."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


def answer_tool(task: TaskSpec) -> dict[str, Any]:
    """The function schema the model must call to answer this task."""
    if task.output.kind == "json":
        parameters = dict(task.output.schema or {})
    elif task.output.kind == "label":
        parameters = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(task.output.labels)}},
            "required": ["label"],
        }
    else:
        parameters = {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
        }
    return {
        "type": "function",
        "function": {"name": FUNCTION, "description": task.instruction, "parameters": parameters},
    }


def read_answer(task: TaskSpec, message: dict[str, Any]) -> str:
    """The answer text in one response message (tool call arguments, else content).

    Arguments that are not valid JSON are returned as they are: the verifiers reject them
    as a bad candidate (a model error, not a transport error).
    """
    calls = message.get("tool_calls") or []
    if calls:
        function = calls[0].get("function") if isinstance(calls[0], dict) else None
        if not isinstance(function, dict):
            raise TeacherError(f"openai teacher: malformed tool call {calls[0]!r:.200}")
        if function.get("name") != FUNCTION:
            raise TeacherError(
                f"openai teacher: the model called the function {function.get('name')!r}, "
                f"not {FUNCTION!r} as tool_choice asks: the server does not honour "
                "tool_choice; use a model or server that does (or OpenAITeacher(..., "
                "use_tools=False) to read answers from the text)"
            )
        arguments = function.get("arguments", "")
        try:
            value = json.loads(arguments)
        except (TypeError, json.JSONDecodeError):
            return str(arguments)
        if task.output.kind == "json":
            return json.dumps(value, ensure_ascii=False)
        key = "label" if task.output.kind == "label" else "answer"
        if not isinstance(value, dict) or not isinstance(value.get(key), str):
            return json.dumps(value, ensure_ascii=False)
        return str(value[key])
    return canonical_answer(task, str(message.get("content") or ""))


class OpenAITeacher:
    """An OpenAI-compatible chat-completions endpoint answering through function calling."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        requests_per_second: float | None = None,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        use_tools: bool = True,
        task_as_model: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Configure the endpoint.

        Args:
            base_url: e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
            model: the model name sent in each request.
            api_key_env: environment variable holding the key (no header if unset).
            timeout: seconds per request.
            max_retries: retries after the first try, for retryable failures.
            requests_per_second: client-side rate limit (None: unlimited).
            backoff: first backoff in seconds; doubles each retry, with jitter.
            max_backoff: cap of one wait (also caps Retry-After).
            use_tools: answer through function calling (else plain text content).
            task_as_model: the server serves tasks as models (``tinyllm serve``): send the
                task name as ``model`` and the raw input as the only user message, without
                tools; the server applies the task's prompt itself.
            sleep: how to wait (tests pass a recorder).
        """
        try:
            import httpx
        except ImportError as e:
            raise missing_dependency("httpx", "train", "The OpenAI-compatible teacher") from e
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"openai teacher: base URL {base_url!r} must start with http(s)://")
        if (
            timeout <= 0
            or max_retries < 0
            or (requests_per_second is not None and requests_per_second <= 0)
        ):
            raise ConfigError(
                "openai teacher: timeout and requests_per_second must be > 0, max_retries >= 0"
            )
        self.name = f"tinyllm:{base_url}" if task_as_model else f"openai:{model}@{base_url}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.max_retries = model, max_retries
        self.use_tools, self.task_as_model = use_tools and not task_as_model, task_as_model
        self.supports_n = True  # cleared when the server rejects n > 1
        self.backoff, self.max_backoff, self.sleep = backoff, max_backoff, sleep
        self.interval = 1.0 / requests_per_second if requests_per_second else 0.0
        self._next_slot = 0.0
        self._paused_until = 0.0  # a 429's Retry-After holds back every thread's requests
        self._lock = threading.Lock()
        self._served = threading.local()  # the pause this thread already slept
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(timeout=timeout, headers=headers)
        self.requests = 0

    def label(
        self, task: TaskSpec, inputs: Sequence[str], k: int = 1, temperature: float = 0.0
    ) -> list[list[str]]:
        """``k`` answers per input, one request per input (``n=k``)."""
        check_k(k, temperature)
        return [self._answers(task, text, k, temperature) for text in inputs]

    def request_body(self, task: TaskSpec, text: str, k: int, temperature: float) -> dict[str, Any]:
        """The JSON body of one chat-completions request (``n`` only when k > 1)."""
        body: dict[str, Any] = {
            "model": task.name if self.task_as_model else self.model,
            "messages": [{"role": "user", "content": text}]
            if self.task_as_model
            else conversation(task, text, []),
            "temperature": temperature,
            "max_tokens": max(task.output.max_new_tokens, 64),
        }
        if k > 1:
            body["n"] = k
        if self.use_tools:
            body["tools"] = [answer_tool(task)]
            body["tool_choice"] = {"type": "function", "function": {"name": FUNCTION}}
        return body

    def _answers(self, task: TaskSpec, text: str, k: int, temperature: float) -> list[str]:
        if k > 1 and self.supports_n:
            try:
                return self._choices(task, self.request_body(task, text, k, temperature))[:k]
            except NoMultipleChoices:
                self.supports_n = False
        body = self.request_body(task, text, 1, temperature)
        return [a for _ in range(k) for a in self._choices(task, body)[:1]]

    def _choices(self, task: TaskSpec, body: dict[str, Any]) -> list[str]:
        data = self._post(body)
        return [read_answer(task, choice["message"]) for choice in data["choices"]]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; the parsed response, or a TeacherError naming the last failure."""
        last = ""
        for attempt in range(self.max_retries + 1):
            self._wait_for_slot()
            try:
                return self._post_once(body)
            except RetryableError as e:
                last = str(e)
                if attempt == self.max_retries:
                    break
                delay = min(self.max_backoff, self.backoff * 2**attempt) * random.uniform(0.5, 1)
                wait = min(self.max_backoff, e.wait) if e.wait is not None else delay
                if e.wait is not None:
                    self._pause(wait)
                self.sleep(wait)
        raise TeacherError(
            f"openai teacher {self.url}: gave up after {self.max_retries + 1} tries; "
            f"last failure: {last}"
        )

    def _post_once(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        self.requests += 1
        try:
            response = self.client.post(self.url, json=body)
        except httpx.TimeoutException as e:
            raise RetryableError(f"timed out ({e.__class__.__name__})") from e
        except httpx.TransportError as e:
            raise RetryableError(f"connection failed ({e})") from e
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetryableError(f"HTTP {status}: {response.text[:200]}", _retry_after(response))
        if status == 400 and body.get("n", 1) > 1 and _error_param(response) == "n":
            raise NoMultipleChoices(response.text[:200])
        if status >= 400:
            hint = " (set the API key variable)" if status in (401, 403) else ""
            raise TeacherError(
                f"openai teacher {self.url}: HTTP {status}{hint}: {response.text[:300]}"
            )
        try:
            data = response.json()
            for choice in data["choices"]:
                if not isinstance(choice["message"], dict):
                    raise TypeError("message is not an object")
            if not data["choices"]:
                raise ValueError("no choices")
        except (ValueError, KeyError, TypeError) as e:
            raise RetryableError(
                f"malformed response ({e.__class__.__name__}: {e}): {response.text[:200]!r}"
            ) from e
        return dict(data)

    def _pause(self, seconds: float) -> None:
        """Hold back the other threads' next requests for ``seconds`` (a server's
        Retry-After, which this thread sleeps itself): concurrent workers back off together
        instead of each hitting the limit again."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
            self._served.until = self._paused_until

    def _wait_for_slot(self) -> None:
        """Wait out another thread's Retry-After pause, then the client-side rate limit:
        request starts at least ``1/requests_per_second`` apart."""
        with self._lock:
            now = time.monotonic()
            paused = (
                self._paused_until
                if self._paused_until > getattr(self._served, "until", 0.0)
                else 0.0
            )
            start = max(now, paused, self._next_slot if self.interval else 0.0)
            if self.interval:
                self._next_slot = start + self.interval
        if start > now:
            self.sleep(start - now)


class NoMultipleChoices(Exception):
    """The server answers only one choice per request (it rejected ``n`` > 1)."""


def _error_param(response: Any) -> Any:
    try:
        return response.json()["error"]["param"]
    except (ValueError, KeyError, TypeError):
        return None


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
