"""``tinyllm serve``: load a bundle's engine and serve its tasks over HTTP."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tinyllm.runtime.access import ServerLimits


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
    from tinyllm.runtime.http import create_app, run_server

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
