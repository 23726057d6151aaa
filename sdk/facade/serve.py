"""``tinyllm serve``: load a bundle's engine and serve its tasks over HTTP."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tinyllm.runtime.access import ServerLimits

PathLike = str | os.PathLike[str]


def serve_bundle(
    bundle: str | os.PathLike[str],
    *,
    host: str,
    port: int,
    max_batch: int | None,
    engine: str | None,
    max_body_bytes: int,
    deadline_s: float | None,
    log_level: str,
    base_model: str | None,
    engine_options: Mapping[str, Any] | None,
    verify: Literal["sha256", "size"],
    api_key: str | None,
    insecure: bool,
    limits: ServerLimits | None,
) -> None:
    """Check the bind address and key, load the engine, run the server until interrupted.

    The arguments are those of :func:`tinyllm.api.serve`.
    """
    from tinyllm.bundle import Bundle
    from tinyllm.runtime import Engine
    from tinyllm.runtime.access import API_KEY_ENV, ServerLimits, check_bind
    from tinyllm.runtime.openai_app import create_app, run_server

    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    check_bind(host, api_key, insecure)
    limits = limits or ServerLimits()
    opened = Bundle.open(bundle, verify="size")  # Engine.load hashes the files it reads
    runner = Engine.load(
        opened, engine=engine, max_batch=max_batch, verify=verify, **dict(engine_options or {})
    )
    app = create_app(
        runner,
        max_body_bytes=max_body_bytes,
        owner=opened.manifest.name,
        deadline_s=deadline_s,
        close_engine=True,
        base_model=None if base_model in runner.tasks else base_model,
        api_key=api_key,
        limits=limits,
    )
    run_server(app, host, port, log_level, max_connections=limits.max_connections)


def serve(
    bundle: PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int | None = None,
    engine: str | None = None,
    max_body_bytes: int = 1 << 20,
    deadline_s: float | None = None,
    log_level: str = "info",
    base_model: str | None = "base",
    engine_options: Mapping[str, Any] | None = None,
    verify: Literal["sha256", "size"] = "sha256",
    api_key: str | None = None,
    insecure: bool = False,
    limits: ServerLimits | None = None,
) -> None:
    """Serve a bundle's tasks over OpenAI-compatible HTTP until interrupted (needs
    ``tinyllm[serve]``). Each task is a model; Ctrl-C drains in-flight requests.

    Args:
        bundle: a bundle with an exported engine and tasks.
        host: interface to bind (loopback by default: nothing outside this machine).
        port: TCP port (0: any free port, printed when the server starts).
        max_batch: KV rows, i.e. requests generated together (default: the engine's
            serving.json from ``tinyllm profile --apply``, else 8).
        engine: which exported engine (default: the CPU one).
        max_body_bytes: larger request bodies get 413.
        deadline_s: per-request deadline (504 when missed); None: the limits' request
            timeout.
        log_level: uvicorn's log level.
        base_model: model name of plain completions on the base model (None, or the name
            of a task: tasks only).
        engine_options: more keyword arguments for ``Engine.load`` (scheduler, queue_size).
        verify: ``sha256`` checks the hash of every file the engine reads before serving
            (remembered per file, so a restart is fast); ``size`` only their sizes.
        api_key: require ``Authorization: Bearer KEY`` (default: ``$TINYLLM_API_KEY``).
        insecure: allow binding a non-loopback address without an API key.
        limits: connections, open streams, ``max_tokens`` caps, request timeout
            (default :class:`tinyllm.runtime.access.ServerLimits`).
    """
    serve_bundle(
        bundle,
        host=host,
        port=port,
        max_batch=max_batch,
        engine=engine,
        max_body_bytes=max_body_bytes,
        deadline_s=deadline_s,
        log_level=log_level,
        base_model=base_model,
        engine_options=engine_options,
        verify=verify,
        api_key=api_key,
        insecure=insecure,
        limits=limits,
    )
