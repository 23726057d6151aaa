"""A server-sent-events response that notices a client going away.

Closing the event stream closes the engine's stream under it, which cancels the request
in the engine (its batch row is freed at once).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from tinyllm.runtime.prometheus import ServerMetrics


async def close(pieces: AsyncIterator[Any]) -> None:
    aclose = getattr(pieces, "aclose", None)
    if aclose is not None:
        await aclose()


async def close_shielded(pieces: AsyncIterator[Any]) -> None:
    """Close a stream even while the calling task is being cancelled (client gone)."""
    import anyio

    with anyio.CancelScope(shield=True):
        await close(pieces)


class SSEResponse:
    """An event stream (ASGI app) that watches for the client going away and then stops.

    Closing the body iterator closes the engine's stream, which cancels the request.
    """

    status_code = 200

    def __init__(
        self,
        events: AsyncIterator[bytes],
        metrics: ServerMetrics,
        task: str,
        start: float,
        headers: dict[str, str],
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.events, self.metrics, self.task, self.start = events, metrics, task, start
        self.on_end = on_end
        self.headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **{k.lower(): v for k, v in headers.items()},
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        import anyio

        gone = False

        async def body(group: anyio.abc.TaskGroup) -> None:
            nonlocal gone
            raw = [(k.encode(), v.encode()) for k, v in self.headers.items()]
            try:
                await send({"type": "http.response.start", "status": 200, "headers": raw})
                async for event in self.events:
                    await send({"type": "http.response.body", "body": event, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the server reports a closed connection this way
                gone = True
            group.cancel_scope.cancel()

        async def watch(group: anyio.abc.TaskGroup) -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            group.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(body, group)
                group.start_soon(watch, group)
        finally:
            if self.on_end is not None:
                self.on_end()
            await close_shielded(self.events)
            if gone:
                self.metrics.disconnected()
            status = 499 if gone else 200
            self.metrics.finished(self.task, status, time.perf_counter() - self.start)
