"""OpenAI-compatible HTTP server over a serving engine (Starlette app, run by uvicorn).

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (``model`` names a task;
``stream: true`` sends server-sent events ending ``data: [DONE]``), ``GET /v1/models``
(the tasks), ``GET /health``, ``GET /metrics`` (Prometheus text). Errors use OpenAI's
``{"error": {...}}`` body. A client that disconnects mid-stream cancels its request.
Client faults are 4xx; a failure inside the engine is a 500 ``server_error``. With an API
key, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY``; :class:`ServerLimits`
bounds open streams, ``max_tokens`` per task and the time per request (see
:mod:`tinyllm.runtime.access`). Needs the ``serve`` extra (starlette, uvicorn), imported
when an app is made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from tinyllm.errors import ConfigError, missing_dependency
from tinyllm.runtime import openai_wire as wire
from tinyllm.runtime.access import ServerLimits, check_api_key, key_matches
from tinyllm.runtime.httperrors import classify, unauthorized
from tinyllm.runtime.prometheus import ServerMetrics
from tinyllm.runtime.sse import SSEResponse, close, close_shielded
from tinyllm.runtime.webserver import DEFAULT_HOST, SERVE_EXTRA, BackgroundServer, run_server

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

MAX_BODY_BYTES = 1 << 20
log = logging.getLogger(__name__)
__all__ = ["DEFAULT_HOST", "BackgroundServer", "ServerLimits", "create_app", "run_server"]


class ServingEngine(Protocol):
    """What the server needs from an engine (``tinyllm.Engine`` provides it)."""

    @property
    def tasks(self) -> Mapping[str, Any]: ...

    async def arun(self, task: str, text: str, **options: Any) -> Any: ...

    def astream_task(self, task: str, text: str, **options: Any) -> AsyncIterator[str]: ...

    def stats(self) -> Mapping[str, Any]: ...


class CompletionEngine(ServingEngine, Protocol):
    """An engine that also completes plain prompts on its base model (no task)."""

    def submit_complete(self, prompt: Any, config: Any, *, deadline_s: float | None) -> Any: ...

    def astream_complete(
        self, prompt: Any, config: Any, *, deadline_s: float | None
    ) -> AsyncIterator[str]: ...


class TaskServer:
    """The request handlers of one app: parsing, engine calls, errors, metrics."""

    def __init__(
        self,
        engine: ServingEngine,
        max_body_bytes: int,
        owner: str,
        base_model: str | None,
        limits: ServerLimits,
        api_key: str | None = None,
    ) -> None:
        self.engine = engine
        self.base_model = base_model
        self.max_body_bytes = max_body_bytes
        self.owner = owner
        self.limits = limits
        self.deadline_s = limits.request_timeout_s
        self.api_key = api_key
        self.streams = 0  # open event streams (one event loop: no lock needed)
        self.created = int(time.time())
        self.metrics = ServerMetrics()

    def authorize(self, request: Request) -> None:
        """Raise 401 unless the request carries the API key (when the server has one)."""
        header = request.headers.get("authorization")
        if self.api_key is not None and not key_matches(header, self.api_key):
            raise unauthorized()

    def error(self, err: wire.WireError, request_id: str | None = None) -> Response:
        """An OpenAI-style error response."""
        from starlette.responses import JSONResponse

        headers = {"Retry-After": "1"} if err.status in (429, 503) else {}
        if err.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if request_id:
            headers["X-Request-Id"] = request_id
        body = wire.error_body(str(err), err.kind, err.code, err.param)
        return JSONResponse(body, status_code=err.status, headers=headers)

    async def read_json(self, request: Request) -> dict[str, Any]:
        """The body as a JSON object, refusing bodies over ``max_body_bytes`` (413)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large()
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > self.max_body_bytes:
                raise self._too_large()
        return wire.parse_json(bytes(body))

    def _too_large(self) -> wire.WireError:
        return wire.WireError(
            413,
            f"the request body exceeds {self.max_body_bytes} bytes",
            "invalid_request_error",
            "request_too_large",
        )

    async def complete(self, request: Request, kind: wire.Kind) -> Response:
        """POST /v1/chat/completions and /v1/completions."""
        start = time.perf_counter()
        self.metrics.started()
        task, status, streaming = "-", 500, False
        rid = request.headers.get("x-request-id") or wire.new_id(kind)
        try:
            self.authorize(request)
            req = wire.parse_request(kind, await self.read_json(request))
            task, streaming = req.task, req.stream
            self._admit(req)
            response = await (self._stream(req, rid) if req.stream else self._once(req, rid))
            status = response.status_code
            return response
        except Exception as e:
            err = classify(e)
            status = err.status
            _log_server_error(err, e, task, rid)
            return self.error(err, rid)
        finally:
            if not (status == 200 and streaming):  # a stream reports when it ends
                self.metrics.finished(task, status, time.perf_counter() - start)

    def _admit(self, req: wire.TaskRequest) -> None:
        """Refuse what this request may not have: an unknown model, base-model options on
        a task, more tokens than the cap, a stream beyond the limit."""
        if req.task not in self.engine.tasks and req.task != self.base_model:
            known = ", ".join(self.model_names()) or "none"
            raise wire.WireError(
                404,
                f"the model {req.task!r} does not exist: models are this server's tasks ({known})",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        option = req.base_only() if req.task != self.base_model else None
        if option is not None:
            raise wire.invalid(
                f"'{option}' applies to plain completions on the base model"
                f"{f' ({self.base_model!r})' if self.base_model else ''}; a task takes its "
                "decoding from its spec: drop it",
                option,
            )
        self._admit_tools(req)
        cap = self.limits.token_cap(req.task)
        if req.max_new_tokens is not None and req.max_new_tokens > cap:
            raise wire.invalid(
                f"max_tokens {req.max_new_tokens} is above this server's cap of {cap} for "
                f"{req.task!r}",
                "max_tokens",
            )
        if req.stream and self.streams >= self.limits.max_streams:
            raise wire.WireError(
                429,
                f"{self.streams} streams are open, this server's limit; retry later",
                "rate_limit_error",
                "too_many_streams",
            )

    def _admit_tools(self, req: wire.TaskRequest) -> None:
        """``tools`` must list exactly the task's tools (the model calls one of them)."""
        if not req.tools:
            return
        uses = getattr(self.engine.tasks.get(req.task), "tools", None)
        names = list(uses.names) if uses else []
        if sorted(req.tools) != sorted(names):
            raise wire.invalid(
                f"'tools' must list the tools of {req.task!r}: "
                f"{', '.join(names) or 'it has none'}; got {', '.join(req.tools)}",
                "tools",
            )

    def model_names(self) -> list[str]:
        """The tasks, then the base model (plain completions) when there is one."""
        return sorted(self.engine.tasks) + ([self.base_model] if self.base_model else [])

    def _options(self, req: wire.TaskRequest) -> dict[str, Any]:
        options = {
            "max_new_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "deadline_s": self.deadline_s,
        }
        if req.tools:
            options["execute_tools"] = False  # the client runs the calls itself
        return options

    def _raw(self, req: wire.TaskRequest) -> tuple[Any, Any]:
        """(prompt, GenerationConfig) of a plain completion on the base model."""
        from tinyllm.runtime.sampling import GenerationConfig

        config = GenerationConfig(
            max_new_tokens=req.max_new_tokens or GenerationConfig.max_new_tokens,
            temperature=req.temperature or 0.0,
            top_p=req.top_p if req.top_p is not None else 1.0,
            stop=req.stop,
            ignore_eos=req.ignore_eos,
        )
        return (list(req.messages) if req.kind == "chat" else req.text), config

    async def _once(self, req: wire.TaskRequest, rid: str) -> Response:
        import asyncio

        from starlette.responses import JSONResponse

        if req.task == self.base_model:
            engine = cast("CompletionEngine", self.engine)
            prompt, config = self._raw(req)
            future = engine.submit_complete(prompt, config, deadline_s=self.deadline_s)
            output = await asyncio.wrap_future(future)
        else:
            output = await self.engine.arun(req.task, req.text, **self._options(req))
        self.metrics.generated(req.task, output.prompt_tokens, output.output_tokens, output.ttft_s)
        return JSONResponse(wire.response(req, rid, output), headers={"X-Request-Id": rid})

    async def _stream(self, req: wire.TaskRequest, rid: str) -> Response:
        """Start the stream and wait for its first piece (errors before it are HTTP errors)."""
        start = time.perf_counter()
        if req.task == self.base_model:
            prompt, config = self._raw(req)
            engine = cast("CompletionEngine", self.engine)
            pieces = engine.astream_complete(prompt, config, deadline_s=self.deadline_s)
        else:
            pieces = self.engine.astream_task(req.task, req.text, **self._options(req))
        self.streams += 1
        try:
            first = await anext(pieces)
        except StopAsyncIteration:
            first = None
        except BaseException:
            self.streams -= 1
            await close(pieces)
            raise
        events = self._events(req, rid, pieces, first, start)
        return SSEResponse(  # type: ignore[return-value]
            events, self.metrics, req.task, start, {"X-Request-Id": rid}, self._stream_ended
        )

    def _stream_ended(self) -> None:
        self.streams -= 1

    async def _events(
        self,
        req: wire.TaskRequest,
        rid: str,
        pieces: AsyncIterator[str],
        first: str | None,
        start: float,
    ) -> AsyncIterator[bytes]:
        created = int(time.time())
        ttft = time.perf_counter() - start
        try:
            yield wire.sse(
                wire.chunk(req, rid, created, "" if req.kind == "chat" else None, first=True)
            )
            if first is not None:
                yield wire.sse(wire.chunk(req, rid, created, first))
                async for piece in pieces:
                    yield wire.sse(wire.chunk(req, rid, created, piece))
        except Exception as e:  # after the headers: report in-band, as OpenAI does
            err = classify(e)
            _log_server_error(err, e, req.task, rid)
            yield wire.sse(wire.error_body(str(err), err.kind, err.code))
            yield wire.sse("[DONE]")
            return
        finally:
            await close_shielded(pieces)
        output = getattr(pieces, "output", None)
        finish = getattr(output, "finish_reason", None) or "stop"
        yield wire.sse(wire.chunk(req, rid, created, finish=finish))
        if output is not None:
            used = wire.usage(output.prompt_tokens, output.output_tokens)
            self.metrics.generated(req.task, output.prompt_tokens, output.output_tokens, ttft)
            if req.include_usage:
                yield wire.sse(wire.usage_chunk(req, rid, created, used))
        yield wire.sse("[DONE]")

    async def models(self, request: Request) -> Response:
        """GET /v1/models."""
        from starlette.responses import JSONResponse

        try:
            self.authorize(request)
            names = self.model_names()
        except Exception as e:  # closed engine: 503
            return self.error(classify(e))
        return JSONResponse(wire.model_list(names, self.created, self.owner))

    async def health(self, request: Request) -> Response:
        """GET /health: 200 while the engine accepts work, 503 once it is closing."""
        from starlette.responses import JSONResponse

        try:
            stats, tasks = dict(self.engine.stats()), len(self.engine.tasks)
        except Exception:  # a closed engine refuses every call
            return JSONResponse({"status": "closing", "tasks": 0}, status_code=503)
        closed = bool(stats.get("closed", False))
        body = {"status": "closing" if closed else "ok", "tasks": tasks}
        return JSONResponse(body, status_code=503 if closed else 200)

    async def prometheus(self, request: Request) -> Response:
        """GET /metrics (engine counters only while the engine is open)."""
        from starlette.responses import PlainTextResponse

        try:
            self.authorize(request)
        except wire.WireError as e:
            return self.error(e)
        try:
            stats = dict(self.engine.stats())
        except Exception:
            stats = {}
        text = self.metrics.render(stats)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _log_server_error(err: wire.WireError, cause: Exception, task: str, rid: str) -> None:
    """Log a 500 with its traceback: it is the server's fault, and the client sees only
    its one-line message."""
    if err.status == 500:
        log.error("500 server_error for model %r (request %s): %s", task, rid, err, exc_info=cause)


def create_app(
    engine: ServingEngine,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    owner: str = "tinyllm",
    deadline_s: float | None = None,
    close_engine: bool = False,
    base_model: str | None = None,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
) -> Starlette:
    """The ASGI app serving ``engine``.

    Args:
        engine: the serving engine (``tinyllm.Engine`` or anything with its interface).
        max_body_bytes: larger request bodies are refused with 413.
        owner: ``owned_by`` of the models in /v1/models.
        deadline_s: per-request deadline passed to the engine (504 when missed); None:
            ``limits.request_timeout_s``.
        close_engine: close the engine (draining in-flight work) when the app shuts down.
        base_model: a model name for plain completions on the base model (no task, no
            adapter; needs ``submit_complete``/``astream_complete``); None: tasks only.
        api_key: require ``Authorization: Bearer <api_key>`` on /v1/* and /metrics.
        limits: open streams, ``max_tokens`` caps, the request timeout (default
            :class:`ServerLimits`; its connection limit applies in ``run_server``).
    """
    try:
        from starlette.applications import Starlette
        from starlette.routing import Route
    except ImportError as e:
        raise missing_dependency("starlette", SERVE_EXTRA, "the HTTP server") from e
    if max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if base_model is not None and not hasattr(engine, "submit_complete"):
        raise ConfigError("base_model needs an engine with plain completions (submit_complete)")
    if base_model is not None and base_model in engine.tasks:
        raise ConfigError(f"base_model {base_model!r} is also a task name; choose another")
    check_api_key(api_key)
    limits = limits or ServerLimits()
    if deadline_s is not None:
        limits = dataclasses.replace(limits, request_timeout_s=deadline_s)
    server = TaskServer(engine, max_body_bytes, owner, base_model, limits, api_key)

    async def chat(request: Request) -> Response:
        return await server.complete(request, "chat")

    async def completions(request: Request) -> Response:
        return await server.complete(request, "completion")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if close_engine:
            import anyio

            await anyio.to_thread.run_sync(lambda: engine.close(drain=True))  # type: ignore[attr-defined]

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/metrics", server.prometheus, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.server = server
    return app
