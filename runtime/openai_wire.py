"""The OpenAI wire format: parse request bodies, build response and error bodies.

Plain dicts in, plain dicts out (no web framework here), so the mapping between the
OpenAI API and a task call is tested without a server. A request names a task as its
``model``; the task's input is the last user message (chat) or the prompt (completions).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from tinyllm.errors import TinyLLMError

Kind = Literal["chat", "completion"]


class WireError(TinyLLMError):
    """A request the server rejects, with its HTTP status and OpenAI error type/code."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param


def invalid(message: str, param: str | None = None, code: str | None = None) -> WireError:
    """A 400 ``invalid_request_error``."""
    return WireError(400, message, "invalid_request_error", code, param)


@dataclass(frozen=True)
class TaskRequest:
    """One parsed request: which task, its input text, and the generation options."""

    kind: Kind
    task: str
    text: str
    stream: bool
    include_usage: bool
    max_new_tokens: int | None
    temperature: float | None
    messages: tuple[dict[str, str], ...] = ()
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    top_p: float | None = None
    tools: tuple[str, ...] = ()  # the function names a client sent: it wants raw calls

    def base_only(self) -> str | None:
        """The first option sent that only plain completions on the base model honour."""
        if self.stop:
            return "stop"
        if self.ignore_eos:
            return "ignore_eos"
        if self.top_p not in (None, 1.0):
            return "top_p"
        return None


# Options of the OpenAI API this server does not implement, with the values that ask for
# nothing (common clients send those): any other value is a 400 naming the option, never
# silently dropped.
UNSUPPORTED: dict[str, tuple[object, ...]] = {
    "logprobs": (False, 0),
    "top_logprobs": (0,),
    "logit_bias": ({},),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "response_format": ({"type": "text"},),
    "seed": (),
    "best_of": (1,),
    "echo": (False,),
    "suffix": ("",),
    "store": (False,),
    "modalities": (["text"],),
    "audio": (),
    "prediction": (),
    "reasoning_effort": (),
    "functions": ([],),
    "function_call": ("none", "auto"),
}


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object (400 if it is not one; NaN and Infinity are not
    JSON and are refused too)."""
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise invalid(f"the request body is not valid JSON ({e})", code="invalid_json") from e
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object", code="invalid_json")
    return data


def parse_request(kind: Kind, data: dict[str, Any]) -> TaskRequest:
    """Map a /v1/chat/completions or /v1/completions body onto a task call."""
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' must name a task (see GET /v1/models)", "model")
    _check_unicode(model, "model")
    text = _chat_input(data.get("messages")) if kind == "chat" else _prompt(data.get("prompt"))
    tools = _tools(kind, data)
    if kind == "chat" and any(
        isinstance(m, dict) and m.get("role") == "tool" for m in data["messages"]
    ):
        raise invalid(
            "'tool' messages are not taken: the server runs a task's tools itself and keeps "
            "no conversation; send the user message alone",
            "messages",
        )
    _refuse_unsupported(data, model)
    n = data.get("n", 1)
    if n not in (1, None) or isinstance(n, bool):
        raise invalid("only n=1 is supported: send one request per completion", "n")
    stream = _optional(data, "stream", bool) or False
    options = _optional(data, "stream_options", dict) or {}
    stop = data.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise invalid("'stop' must be a string or a list of non-empty strings", "stop")
    for s in stop:
        _check_unicode(s, "stop")
    messages = tuple(_messages(data["messages"])) if kind == "chat" else ()
    return TaskRequest(
        kind=kind,
        task=model,
        text=text,
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        max_new_tokens=_token_limit(data),
        temperature=_number(data, "temperature", 0.0, 2.0, low_open=False),
        messages=messages,
        stop=tuple(stop),
        ignore_eos=bool(_optional(data, "ignore_eos", bool)),
        top_p=_number(data, "top_p", 0.0, 1.0, low_open=True),
        tools=tools,
    )


def _tools(kind: Kind, data: dict[str, Any]) -> tuple[str, ...]:
    """The function names of ``tools`` (a client that sends them gets the model's calls
    back as ``tool_calls``, unexecuted); ``tool_choice`` may only leave the choice to it."""
    tools = data.get("tools")
    choice = data.get("tool_choice")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise invalid("'tool_choice' needs 'tools'", "tool_choice")
        return ()
    if kind != "chat":
        raise invalid("'tools' are for /v1/chat/completions", "tools")
    if data.get("stream"):
        raise invalid("streaming tool calls is not supported; send 'stream': false", "stream")
    if choice not in (None, "auto", "required"):
        raise invalid(
            "'tool_choice' may be 'auto' or 'required': a task with tools always calls one",
            "tool_choice",
        )
    names: list[str] = []
    for tool in tools if isinstance(tools, list) else [None]:
        function = tool.get("function") if isinstance(tool, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        declared = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(name, str) or declared != "function":
            raise invalid(
                '\'tools\' must be a list of {"type": "function", "function": {"name": ...}}',
                "tools",
            )
        names.append(name)
    return tuple(names)


def _refuse_unsupported(data: dict[str, Any], model: str) -> None:
    """A 400 naming the first option that asks for something this server does not do."""
    for key, neutral in UNSUPPORTED.items():
        value = data.get(key)
        if value is None or any(_same(value, n) for n in neutral):
            continue
        allowed = " or ".join(json.dumps(n) for n in neutral) or "nothing"
        raise invalid(f"'{key}' is not supported by this server; omit it (or send {allowed})", key)


def _same(value: Any, neutral: object) -> bool:
    """``value == neutral`` without taking True for 1 or False for 0."""
    return bool(value == neutral) and isinstance(value, bool) == isinstance(neutral, bool)


def _token_limit(data: dict[str, Any]) -> int | None:
    """max_completion_tokens (the current name), else max_tokens; each must be >= 1."""
    limit = None
    for key in ("max_tokens", "max_completion_tokens"):
        value = _optional(data, key, int)
        if value is not None:
            if value < 1:
                raise invalid(f"'{key}' must be >= 1, got {value}", key)
            limit = value  # max_completion_tokens, checked last, wins
    return limit


def _number(
    data: dict[str, Any], key: str, low: float, high: float, *, low_open: bool
) -> float | None:
    """An optional finite number in [low, high] (or (low, high] when ``low_open``)."""
    value = _optional(data, key, (int, float))
    if value is None:
        return None
    above = value > low if low_open else value >= low
    if not (math.isfinite(value) and above and value <= high):
        bracket = "(" if low_open else "["
        raise invalid(f"'{key}' must be a number in {bracket}{low:g}, {high:g}], got {value}", key)
    return float(value)


def _check_unicode(text: str, param: str) -> None:
    """400 for text that cannot be encoded (a lone surrogate from a ``\\ud800`` escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise invalid(
            f"'{param}' holds a lone surrogate (U+{ord(text[e.start]):04X} at character "
            f"{e.start}), which is not valid Unicode; send text as valid UTF-8",
            param,
        ) from e


def _messages(messages: list[Any]) -> list[dict[str, str]]:
    """Chat messages as role/text pairs (for a plain completion on the base model)."""
    out = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise invalid("each message needs a 'role' and a 'content'", "messages")
        _check_unicode(m["role"], "messages")
        out.append({"role": m["role"], "content": _content_text(m.get("content"))})
    return out


def _optional(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
        raise invalid(f"'{key}' has the wrong type (got a boolean)", key)
    if not isinstance(value, kind):
        raise invalid(f"'{key}' has the wrong type (got {type(value).__name__})", key)
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _chat_input(messages: Any) -> str:
    """The task input: the text of the last user message."""
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list of messages", "messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _content_text(message.get("content"))
    raise invalid("'messages' has no user message: the task input is the last one", "messages")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        _check_unicode(content, "messages")
        return content
    if isinstance(content, list):  # content parts: only text parts are meaningful here
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        texts = [p for p in parts if isinstance(p, str)]
        if texts and len(texts) == len(parts):
            joined = "".join(texts)
            _check_unicode(joined, "messages")
            return joined
    raise invalid("a user message's content must be text (a string or text parts)", "messages")


def _prompt(prompt: Any) -> str:
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("'prompt' must be one string (batches: send one request each)", "prompt")
    _check_unicode(prompt, "prompt")
    return prompt


def new_id(kind: Kind) -> str:
    """A response id in OpenAI's style (chatcmpl-… or cmpl-…)."""
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response(req: TaskRequest, rid: str, output: Any) -> dict[str, Any]:
    """The full (non-streamed) response for a finished task output.

    ``tinyllm`` carries the task's parsed value and whether it passed its verifier, and
    the executed tool call (name, arguments, result, error, seconds) for a task with tools.
    A client that sent ``tools`` gets a valid call as ``tool_calls``, unexecuted.
    """
    extra = {"value": output.value, "valid": output.valid, "error": output.error}
    call = getattr(output, "tool_call", None)
    if call is not None:
        extra["tool_call"] = dataclasses.asdict(call)
    if req.kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": output.text}
        finish = output.finish_reason
        if req.tools and output.valid:
            message = {"role": "assistant", "content": None, "tool_calls": [_call(output.value)]}
            finish = "tool_calls"
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": finish,
            "logprobs": None,
        }
        obj = "chat.completion"
    else:
        choice = {
            "index": 0,
            "text": output.text,
            "finish_reason": output.finish_reason,
            "logprobs": None,
        }
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": req.task,
        "choices": [choice],
        "usage": usage(output.prompt_tokens, output.output_tokens),
        "tinyllm": extra,
    }


def _call(value: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI ``tool_calls`` entry (the arguments as a JSON string, as OpenAI sends)."""
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {
            "name": value["name"],
            "arguments": json.dumps(value["arguments"], ensure_ascii=False),
        },
    }


def chunk(
    req: TaskRequest,
    rid: str,
    created: int,
    text: str | None = None,
    *,
    first: bool = False,
    finish: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk: a text delta, or (``finish``) the last one with its reason."""
    if req.kind == "chat":
        delta: dict[str, Any] = {}
        if first:
            delta["role"] = "assistant"
        if text is not None:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": created, "model": req.task, "choices": [choice]}


def usage_chunk(req: TaskRequest, rid: str, created: int, used: dict[str, int]) -> dict[str, Any]:
    """The extra last chunk of ``stream_options.include_usage``: no choices, the usage."""
    obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": req.task,
        "choices": [],
        "usage": used,
    }


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event (``data: …`` and a blank line)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def model_list(tasks: list[str], created: int, owner: str) -> dict[str, Any]:
    """GET /v1/models: every task as a model."""
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": owner} for name in tasks
        ],
    }
