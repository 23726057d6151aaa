"""Run an ASGI app with uvicorn: in the foreground (``tinyllm serve``) or on a background
thread (tests, benchmarks). Needs the ``serve`` extra."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from tinyllm.errors import TinyLLMError, missing_dependency

DEFAULT_HOST = "127.0.0.1"
SERVE_EXTRA = "serve"


def _uvicorn_config(
    app: Any, host: str, port: int, log_level: str, max_connections: int | None
) -> Any:
    try:
        import uvicorn
    except ImportError as e:
        raise missing_dependency("uvicorn", SERVE_EXTRA, "the HTTP server") from e
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=30,
        lifespan="on",
        # Connections beyond max_connections get 503 before reaching the app. uvicorn
        # counts the arriving connection itself, hence the + 1.
        limit_concurrency=None if max_connections is None else max_connections + 1,
    )


def run_server(
    app: Any,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    log_level: str = "info",
    max_connections: int | None = None,
) -> None:
    """Serve ``app`` until interrupted (Ctrl-C / SIGTERM drain in-flight requests first).

    ``max_connections``: open connections at once (more get 503); None: unlimited.
    """
    import uvicorn

    # uvicorn re-raises Ctrl-C after its graceful shutdown: that is the normal end here.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(_uvicorn_config(app, host, port, log_level, max_connections)).run()


class BackgroundServer:
    """A server on a background thread (tests, benchmarks); a context manager.

    ``port=0`` picks a free port; :attr:`url` is the base URL once started.
    """

    def __init__(
        self,
        app: Any,
        host: str = DEFAULT_HOST,
        port: int = 0,
        log_level: str = "warning",
        max_connections: int | None = None,
    ) -> None:
        import uvicorn

        config = _uvicorn_config(app, host, port, log_level, max_connections)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="tinyllm-http", daemon=True)
        self.host = host

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        sockets = [s for srv in self.server.servers for s in srv.sockets]
        return f"http://{self.host}:{sockets[0].getsockname()[1]}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the server accepts connections."""
        self.thread.start()
        end = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > end:
                raise TinyLLMError("the HTTP server did not start (see its log above)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop accepting, finish in-flight requests, shut down."""
        self.server.should_exit = True
        self.thread.join()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
