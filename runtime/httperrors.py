"""How failures travel over HTTP: tinyllm errors to status codes and OpenAI error types.

Only the client's faults are 4xx; a failure inside the engine (a tinyllm error raised
while generating, or any other exception) is a 500 ``server_error``.
"""

from __future__ import annotations

from tinyllm.errors import (
    ConfigError,
    DeadlineExceededError,
    EngineClosedError,
    PromptTooLongError,
    QueueFullError,
    RequestCancelledError,
    TaskError,
    TinyLLMError,
    UnknownTaskError,
)
from tinyllm.runtime import openai_wire as wire

# Engine errors -> (HTTP status, OpenAI error type, code); the first match wins.
ERROR_STATUS: tuple[tuple[type[Exception], int, str, str], ...] = (
    (UnknownTaskError, 404, "invalid_request_error", "model_not_found"),
    (QueueFullError, 429, "rate_limit_error", "queue_full"),
    (EngineClosedError, 503, "service_unavailable", "engine_closed"),
    (PromptTooLongError, 400, "invalid_request_error", "context_length_exceeded"),
    (DeadlineExceededError, 504, "timeout_error", "deadline_exceeded"),
    (RequestCancelledError, 499, "cancelled", "request_cancelled"),
    (ConfigError, 400, "invalid_request_error", "invalid_value"),
    (TaskError, 400, "invalid_request_error", "invalid_task_input"),
)


def classify(error: BaseException) -> wire.WireError:
    """The HTTP status and OpenAI error type of an engine error.

    Only the client's faults (the table above) are 4xx; any other failure, a tinyllm
    error raised inside the engine included, is a 500 ``server_error``.
    """
    if isinstance(error, wire.WireError):
        return error
    for cls, status, kind, code in ERROR_STATUS:
        if isinstance(error, cls):
            return wire.WireError(status, str(error), kind, code)
    if isinstance(error, TinyLLMError):
        return wire.WireError(500, f"the engine failed: {error}", "server_error", None)
    return wire.WireError(500, f"internal error: {type(error).__name__}", "server_error", None)


def unauthorized() -> wire.WireError:
    """401 for a missing or wrong API key (the key itself is never echoed)."""
    return wire.WireError(
        401,
        "missing or wrong API key: send 'Authorization: Bearer <key>'",
        "invalid_request_error",
        "invalid_api_key",
    )
