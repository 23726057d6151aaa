"""The engine's serving calls: tasks by name, futures, async, streaming, dynamic tasks.

:class:`TaskService` is mixed into :class:`tinyllm.runtime.Engine`; the decode loop
(:mod:`tinyllm.runtime.serving`) is made on first use and owns the engine's session.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from tinyllm.errors import ConfigError, EngineClosedError
from tinyllm.runtime.router import Route, Router, TaskOutput
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.runtime.serving import Server, ServingOptions, Sink
from tinyllm.runtime.session import DecoderSession
from tinyllm.runtime.slots import AdapterSlots
from tinyllm.runtime.stopwatch import StepRecorder
from tinyllm.tasks import Example, TaskSpec

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.bundle import Bundle
    from tinyllm.chat import ChatTokenizer
    from tinyllm.runtime.engineinfo import EngineInfo
    from tinyllm.tasktable import TaskTable

Prompt = str | list[dict[str, str]]


class TaskService:
    """Serve the bundle's tasks (and plain completions) from many threads at once."""

    bundle: Bundle
    info: EngineInfo
    session: DecoderSession
    tokenizer: ChatTokenizer
    table: TaskTable | None
    max_batch: int
    stop_ids: set[int]
    serving: ServingOptions
    _server: Server | None
    _closed: bool
    _serve_lock: threading.Lock

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        """The tasks served now, by name."""
        return dict(self._serving().router.tasks)

    def submit(
        self,
        task: str,
        text: str,
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        deadline_s: float | None = None,
        shots: list[Example] | None = None,
        wait: bool = False,
        execute_tools: bool = True,
    ) -> Future[TaskOutput]:
        """Queue ``text`` for ``task``; ``future.cancel()`` cancels the request.

        Raises at once: UnknownTaskError, QueueFullError (unless ``wait``: then it waits
        for room in the queue), PromptTooLongError, EngineClosedError. The future fails
        with DeadlineExceededError when ``deadline_s`` seconds pass before the result.
        ``shots`` are worked examples put before the input (few-shot prompting). For a
        task with tools, ``execute_tools`` False returns the model's call unexecuted
        (``value`` ``{"name", "arguments"}``, checked against the tool's schema).
        """
        server = self._serving()
        route = server.router.route(
            task, text, max_new_tokens, temperature, shots, execute_tools=execute_tools
        )
        return server.submit(route, deadline_s, None, wait)

    def run(self, task: str, text: str, **kwargs: Any) -> TaskOutput:
        """Serve one request and wait for it (arguments as :meth:`submit`)."""
        return self.submit(task, text, **kwargs).result()

    async def arun(self, task: str, text: str, **kwargs: Any) -> TaskOutput:
        """``run`` for asyncio: awaits the result without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(task, text, **kwargs))

    def stream_task(self, task: str, text: str, **kwargs: Any) -> TextStream:
        """The generated text in pieces; joined, they equal ``run(...).text``. The stream's
        ``output`` is the TaskOutput once it ended; closing it early cancels the request."""
        route = self._route(
            task, text, kwargs.pop("max_new_tokens", None), kwargs.pop("temperature", None)
        )
        return self._stream(route, kwargs.get("deadline_s"))

    def astream_task(self, task: str, text: str, **kwargs: Any) -> AsyncTextStream:
        """``stream_task`` for asyncio."""
        route = self._route(
            task, text, kwargs.pop("max_new_tokens", None), kwargs.pop("temperature", None)
        )
        return self._astream(route, kwargs.get("deadline_s"))

    def submit_complete(
        self,
        prompt: Prompt,
        config: GenerationConfig | None = None,
        *,
        deadline_s: float | None = None,
    ) -> Future[TaskOutput]:
        """Queue a plain completion on the base model (no task, adapter slot 0).

        ``prompt`` is raw text, or chat messages rendered with the bundle's chat template.
        """
        server = self._serving()
        return self._submit(server.router.raw(prompt, config or GenerationConfig()), deadline_s)

    def complete(
        self, prompt: Prompt, config: GenerationConfig | None = None, **kwargs: Any
    ) -> TaskOutput:
        """Serve one plain completion and wait for it."""
        return self.submit_complete(prompt, config, **kwargs).result()

    def stream_complete(
        self,
        prompt: Prompt,
        config: GenerationConfig | None = None,
        *,
        deadline_s: float | None = None,
    ) -> TextStream:
        """Stream a plain completion's text in pieces (see :meth:`stream_task`)."""
        return self._stream(
            self._serving().router.raw(prompt, config or GenerationConfig()), deadline_s
        )

    def astream_complete(
        self,
        prompt: Prompt,
        config: GenerationConfig | None = None,
        *,
        deadline_s: float | None = None,
    ) -> AsyncTextStream:
        """``stream_complete`` for asyncio."""
        return self._astream(
            self._serving().router.raw(prompt, config or GenerationConfig()), deadline_s
        )

    def add_task(
        self, spec: TaskSpec, adapter: LoraAdapter | None = None, *, wait_s: float = 60.0
    ) -> None:
        """Serve a new task while serving: its adapter fills a free slot in place (no
        re-export, no restart; requests in flight are unaffected). No adapter: base model.
        An engine with a merged adapter takes no new task (its weights are one task's).

        A removed task's slot frees when its last request in flight ends; when every slot
        is taken but some are still finishing such requests, this waits up to ``wait_s``
        seconds for one (a task removed and added back at once needs that)."""
        server = self._serving()
        merged = self.info.merged_adapter
        if merged is not None:
            raise ConfigError(
                f"this engine has the adapter of task {merged!r} merged into its weights and "
                f"serves only that task: it cannot add task {spec.name!r}; export an engine "
                f"with LoRA slots, or one with --merge-adapter {spec.name}"
            )
        self._check_new(server, spec.name)
        # Rendering runs chat templates: outside the lock, or requests and the decode loop
        # wait for it; only the slot and the publication need the lock.
        ready = server.router.prepare(spec)
        with server.cond:
            self._check_new(server, spec.name)  # another thread may have added it since
            if adapter is not None and not server.slots.free() and server.slots.retired:
                deadline = time.monotonic() + wait_s
                while not server.slots.free() and server.slots.retired:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ConfigError(
                            f"all {server.slots.count - 1} adapter slots are taken and "
                            f"{len(server.slots.retired)} of them still finish requests of "
                            f"removed tasks after {wait_s:g} s; retry when those end, or "
                            "export the engine with more lora_slots"
                        )
                    server.cond.wait(min(left, 0.05))  # the decode loop runs meanwhile
                self._check_new(server, spec.name)  # another thread may have added it
            slot = server.slots.fill(spec.name, adapter) if adapter is not None else 0
            server.cache.drop(task=spec.name)
            if slot:
                server.cache.drop(slot=slot)
            server.router.publish(ready, slot)

    @staticmethod
    def _check_new(server: Server, name: str) -> None:
        if server.router.slot(name) is not None:
            raise ConfigError(f"task {name!r} is already served; remove_task it first")

    def remove_task(self, name: str) -> None:
        """Stop accepting requests for ``name``; its requests in flight still finish."""
        server = self._serving()
        with server.cond:
            server.slots.release(server.router.remove(name))
            server.cache.drop(task=name)

    def record(self, recorder: StepRecorder | None) -> None:
        """Attach a recorder to the decode loop (``tinyllm profile``); None detaches it.

        It sees every step from the next one on (see :mod:`tinyllm.runtime.stopwatch`).
        """
        server = self._serving()
        with server.cond:
            server.recorder = recorder

    def stats(self) -> dict[str, Any]:
        """Serving counters (queue depth, running, completed, failed, per task, tokens)."""
        return self._serving().stats()

    def close(self, drain: bool = True) -> None:
        """Stop serving: finish requests in flight (``drain``) or fail them; then every
        call raises EngineClosedError. Closing twice is fine."""
        with self._serve_lock:
            self._closed = True
            server = self._server
        if server is not None:
            server.close(drain)

    def __enter__(self) -> TaskService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _serving(self) -> Server:
        with self._serve_lock:
            if self._closed:
                raise EngineClosedError("the engine is closed; load a new one to serve requests")
            if self._server is None:
                self._server = self._make_server()
            return self._server

    def _new_slots(self) -> AdapterSlots:
        """Empty adapter slots shaped like this engine's LoRA inputs."""
        info = self.info
        return AdapterSlots(
            self.bundle.config, info.lora_slots, info.lora_rank, info.lora_targets, info.float_dtype
        )

    def _make_server(self) -> Server:
        slots = self._new_slots()
        merged = self.info.merged_adapter
        router = Router(self.tokenizer, self.serving.constrain, self.table, merged)
        separate = self.bundle.manifest.lora_mode != "merged"
        for name, spec in self.bundle.task_specs().items():
            if merged is not None:  # its adapter is in the weights (slot 0); no other task
                if name == merged:
                    router.add(spec, 0)
                continue
            has_adapter = separate and name in self.bundle.manifest.adapters
            router.add(spec, slots.fill(name, self.bundle.adapter(name)) if has_adapter else 0)
        return Server(self.session, router, slots, self.stop_ids, self.serving)

    def _route(
        self, task: str, text: str, max_new_tokens: int | None, temperature: float | None
    ) -> Route:
        return self._serving().router.route(task, text, max_new_tokens, temperature)

    def _submit(
        self, route: Route, deadline_s: float | None, sink: Sink | None = None
    ) -> Future[TaskOutput]:
        return self._serving().submit(route, deadline_s, sink)

    def _stream(self, route: Route, deadline_s: float | None) -> TextStream:
        items: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        return TextStream(self._submit(route, deadline_s, items.put), items)

    def _astream(self, route: Route, deadline_s: float | None) -> AsyncTextStream:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        future = self._submit(
            route, deadline_s, lambda item: loop.call_soon_threadsafe(items.put_nowait, item)
        )
        return AsyncTextStream(future, items)


class TextStream(Iterator[str]):
    """Text pieces of one request; ``output`` holds its TaskOutput once the stream ended.

    Closing the stream early cancels the request (its KV row is freed at the next step).
    """

    def __init__(self, future: Future[TaskOutput], items: queue.SimpleQueue[tuple[str, Any]]):
        self.future = future
        self.items = items
        self.output: TaskOutput | None = None

    def __next__(self) -> str:
        if self.output is not None or self.future.cancelled():
            raise StopIteration
        kind, item = self.items.get()
        if kind == "delta":
            return str(item)
        if isinstance(item, BaseException):
            self.future.cancel()
            raise item
        self.output = item
        raise StopIteration

    def close(self) -> None:
        """Stop reading; cancels the request if it has not finished."""
        self.future.cancel()

    def __del__(self) -> None:
        self.future.cancel()


class AsyncTextStream(AsyncIterator[str]):
    """``TextStream`` for asyncio (``aclose()`` cancels the request)."""

    def __init__(self, future: Future[TaskOutput], items: asyncio.Queue[tuple[str, Any]]):
        self.future = future
        self.items = items
        self.output: TaskOutput | None = None

    async def __anext__(self) -> str:
        if self.output is not None or self.future.cancelled():
            raise StopAsyncIteration
        kind, item = await self.items.get()
        if kind == "delta":
            return str(item)
        if isinstance(item, BaseException):
            self.future.cancel()
            raise item
        self.output = item
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading; cancels the request if it has not finished."""
        self.future.cancel()

    def __del__(self) -> None:
        self.future.cancel()
