"""The serving loop: one background thread runs every request of every task on one engine.

Requests join between decode steps (see :mod:`tinyllm.runtime.scheduler`); each KV row
decodes with its task's adapter slot (``lora_index`` per row). Callers get futures; the
loop owns the session, so the public calls are thread-safe.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyllm.errors import (
    DeadlineExceededError,
    EngineClosedError,
    PromptTooLongError,
    RequestCancelledError,
    TinyLLMError,
    UnknownTaskError,
)
from tinyllm.runtime.constraints import JsonPrefix, pick_json_token
from tinyllm.runtime.router import Route, Router, TaskOutput, mask_logits
from tinyllm.runtime.sampling import sample
from tinyllm.runtime.scheduler import Request, Scheduler, SchedulerConfig, StepPlan
from tinyllm.runtime.session import DecoderSession
from tinyllm.runtime.slots import AdapterSlots

Sink = Callable[[tuple[str, Any]], object]


@dataclass(frozen=True)
class ServingOptions:
    """How the engine serves tasks (see :class:`SchedulerConfig` for the scheduling knobs).

    ``constrain`` restricts label tasks' tokens to their label set (a token trie).
    """

    scheduler: SchedulerConfig
    constrain: bool = True


class _Live:
    """Engine-side state of one request in flight."""

    def __init__(self, rid: int, route: Route, future: Future[TaskOutput], sink: Sink | None):
        self.id = rid
        self.route = route
        self.future = future
        self.sink = sink
        self.tokens: list[int] = []
        self.text = ""
        self.sent = 0
        self.rng = np.random.default_rng(route.config.seed)
        self.start = time.perf_counter()
        self.ttft = 0.0
        self.done: str | None = None
        self.json = JsonPrefix(_json_root(route)) if route.json else None

    @property
    def kv_len(self) -> int:
        """Tokens of this row in the KV cache once decoding (the last one is fed next)."""
        return len(self.route.prompt) + len(self.tokens) - 1

    def emit(self, item: tuple[str, Any]) -> None:
        if self.sink is not None:
            try:
                self.sink(item)
            except Exception:  # a closed consumer loop must not stop serving
                self.sink = None


class Server:
    """The loop thread and its state. Created by the engine on first use."""

    def __init__(
        self,
        session: DecoderSession,
        router: Router,
        slots: AdapterSlots,
        stop_ids: set[int],
        options: ServingOptions,
    ) -> None:
        self.session = session
        self.router = router
        self.slots = slots
        self.stop_ids = stop_ids
        self.scheduler = Scheduler(options.scheduler)
        slots.bind(session)
        self.live: dict[int, _Live] = {}
        self.ids = itertools.count()
        self.cond = threading.Condition()
        self.closing = False
        self.drain = True
        self.thread: threading.Thread | None = None
        self.counts: dict[str, int] = dict.fromkeys(
            ("submitted", "completed", "failed", "cancelled", "rejected", "invalid"), 0
        )
        self.tokens = {"prompt": 0, "output": 0}
        self.per_task: dict[str, dict[str, int]] = {}

    def submit(self, route: Route, deadline_s: float | None, sink: Sink | None) -> Future[Any]:
        """Queue a routed request; raises at once when closed, full or too long."""
        limit = self.session.spec.max_seq_len
        if len(route.prompt) >= limit:
            raise PromptTooLongError(
                f"the prompt has {len(route.prompt)} tokens; the engine's context is {limit} "
                "tokens (prompt plus output): shorten the input, or load the engine with a "
                "larger max_seq_len"
            )
        future: Future[TaskOutput] = Future()
        name = route.task.name if route.task else None
        with self.cond:
            if self.closing:
                raise EngineClosedError("the engine is closed; load a new one to serve requests")
            if name is not None and self.router.slots.get(name) != route.slot:
                raise UnknownTaskError(f"task {name!r} was removed while the request was routed")
            rid = next(self.ids)
            now = time.monotonic()
            request = Request(
                rid,
                name or "",
                len(route.prompt),
                route.config.max_new_tokens,
                now,
                None if deadline_s is None else now + deadline_s,
            )
            try:
                self.scheduler.admit(request)
            except TinyLLMError:
                self.counts["rejected"] += 1
                raise
            self.slots.acquire(route.slot)
            self.live[rid] = _Live(rid, route, future, sink)
            self.counts["submitted"] += 1
            self._task_count(name, "submitted")
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="tinyllm-serve", daemon=True)
                self.thread.start()
            self.cond.notify()
        future.add_done_callback(lambda f: self._on_done(rid, f))
        return future

    def _on_done(self, rid: int, future: Future[Any]) -> None:
        if future.cancelled():
            with self.cond:
                self.scheduler.cancel(rid)
                self.cond.notify()

    def close(self, drain: bool) -> None:
        """Stop accepting requests; finish (``drain``) or fail those in flight; join."""
        with self.cond:
            self.closing = True
            self.drain = drain
            self.cond.notify()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.scheduler.requests and not self.closing:
                    self.cond.wait()
                if self.closing and (not self.drain or not self.scheduler.requests):
                    self._fail(
                        list(self.scheduler.requests),
                        EngineClosedError("the engine closed before this request finished"),
                    )
                    return
                try:
                    plan = self.scheduler.schedule(time.monotonic())
                except Exception as e:  # never leave callers waiting on a broken loop
                    self._fail(
                        list(self.scheduler.requests), TinyLLMError(f"scheduling failed: {e}")
                    )
                    continue
                rows = {r.row: r.id for r in self.scheduler.running if r.row is not None}
                for r in plan.cancelled:
                    self._end(r.id, RequestCancelledError(f"request {r.id} was cancelled"))
                for r in plan.expired:
                    self._end(r.id, DeadlineExceededError(f"request {r.id} passed its deadline"))
            try:
                self._step(plan, rows)
            except Exception as e:  # the session failed: fail what ran, keep serving
                with self.cond:
                    self._fail(list(rows.values()), TinyLLMError(f"the engine step failed: {e}"))

    def _fail(self, ids: list[int], error: Exception) -> None:
        """Remove requests from the scheduler and fail them (call with the lock held)."""
        for rid in ids:
            if rid in self.scheduler.requests:
                self.scheduler.finish(rid, observe=False)
                self._end(rid, error)

    def _step(self, plan: StepPlan, rows: dict[int, int]) -> None:
        for group in plan.prefill:
            lives = [self.live[p.request] for p in group]
            logits = self.session.prefill_rows(
                group[0].row,
                [live.route.prompt[p.start : p.end] for p, live in zip(group, lives, strict=True)],
                [p.start for p in group],
                np.array([live.route.slot for live in lives]),
            )
            for p, live, row_logits in zip(group, lives, logits, strict=True):
                self.scheduler.prefilled(p.request, p.end)
                if p.end == len(live.route.prompt):
                    live.ttft = time.perf_counter() - live.start
                    self._advance(live, row_logits)
        if plan.decode:
            decode = set(plan.decode)
            width = max(rows) + 1
            tokens = np.full(width, self.session.pad_id, np.int64)
            lengths = np.zeros(width, np.int64)
            lora = np.zeros(width, np.int64)
            for row, rid in rows.items():
                live = self.live[rid]
                request = self.scheduler.requests[rid]
                # Rows that skip this step write a placeholder at their next position,
                # which their real token overwrites when they run again.
                lengths[row] = live.kv_len if request.decoding else request.prefilled
                lora[row] = live.route.slot
                if rid in decode:
                    tokens[row] = live.tokens[-1]
            logits = self.session.decode(tokens.tolist(), lengths.tolist(), lora)
            for row, rid in rows.items():
                if rid in decode:
                    self._advance(self.live[rid], logits[row])
        with self.cond:
            for rid in [rid for rid, live in self.live.items() if live.done]:
                if rid in self.scheduler.requests:
                    self.scheduler.finish(rid)
                    self._end(rid, None)

    def _advance(self, live: _Live, logits: np.ndarray) -> None:
        """Sample one token for a row and apply its stop rules."""
        route, config = live.route, live.route.config
        self.scheduler.decoded(live.id)
        if route.trie is not None:
            allowed = route.trie.allowed(live.tokens)
            if allowed:
                logits = mask_logits(logits, allowed)
        if live.json is not None:
            eos = self.router.tokenizer.eos_token_id
            text = self.router.token_text
            token = pick_json_token(live.json, logits, config, live.rng, text, eos)
        else:
            token = sample(logits, config, live.rng)
        if token in self.stop_ids and not config.ignore_eos:
            live.done = "stop"
        else:
            live.tokens.append(token)
            live.text = self.router.tokenizer.decode(live.tokens)
            live.done = _stopped(live, self.session.spec.max_seq_len)
            if live.json is not None:
                if not live.json.feed(self.router.token_text(token)):
                    live.json = None  # no token fitted: stop constraining, report it invalid
                elif live.json.mode == "done":
                    live.done = "stop"
        ready = len(live.text) if live.done else _ready(live.text, config.stop)
        if ready > live.sent:
            live.emit(("delta", live.text[live.sent : ready]))
            live.sent = ready

    def _end(self, rid: int, error: Exception | None) -> None:
        """Resolve a request that left the scheduler (call with the lock held)."""
        live = self.live.pop(rid)
        self.slots.done(live.route.slot)
        name = live.route.task.name if live.route.task else None
        if error is None:
            try:
                value, valid, reason = live.route.parse(live.text)
            except Exception as e:  # a verifier bug must not take the loop down
                value, valid, reason = None, False, f"the output could not be checked: {e}"
            result: Any = TaskOutput(
                name,
                live.text,
                value,
                valid,
                reason,
                len(live.route.prompt),
                len(live.tokens),
                live.ttft,
                time.perf_counter() - live.start,
                live.done or "length",
            )
            self.counts["completed"] += 1
            self.counts["invalid"] += not valid
            self.tokens["prompt"] += len(live.route.prompt)
            self.tokens["output"] += len(live.tokens)
            self._task_count(name, "completed")
        else:
            result = error
            kind = "cancelled" if isinstance(error, RequestCancelledError) else "failed"
            self.counts[kind] += 1
            self._task_count(name, kind)
        live.emit(("end", result))
        if live.future.done():
            return
        try:
            if error is None:
                live.future.set_result(result)
            else:
                live.future.set_exception(error)
        except InvalidStateError:  # cancelled by the caller meanwhile
            pass

    def _task_count(self, task: str | None, what: str) -> None:
        counts = self.per_task.setdefault(task or "<completion>", {})
        counts[what] = counts.get(what, 0) + 1

    def stats(self) -> dict[str, Any]:
        """Queue depth, requests in flight, totals and per-task counts (plain data)."""
        with self.cond:
            running = len(self.scheduler.running)
            return {
                "queue_depth": len(self.scheduler.requests) - running,
                "running": running,
                "max_batch": self.scheduler.config.max_rows,
                "queue_size": self.scheduler.config.queue_size,
                **self.counts,
                "prompt_tokens": self.tokens["prompt"],
                "output_tokens": self.tokens["output"],
                "adapter_slots": self.slots.count,
                "adapter_slots_free": self.slots.free(),
                "tasks": {k: dict(v) for k, v in self.per_task.items()},
            }


def _stopped(live: _Live, max_seq_len: int) -> str | None:
    """Why the row is done after its latest token (cutting a stop from its text), or None."""
    route, config = live.route, live.route.config
    if route.first_line:  # label and text tasks answer on one line
        body = live.text.lstrip()
        lines = body.splitlines()
        if len(lines) > 1 or (lines and len(lines[0]) < len(body)):  # a line break after text
            live.text = live.text[: len(live.text) - len(body) + len(lines[0])]
            return "stop"
    for stop in config.stop:
        cut = live.text.find(stop)
        if cut >= 0:
            live.text = live.text[:cut]
            return "stop"
    if route.trie is not None and route.trie.complete(live.tokens):
        return "stop"
    full = len(route.prompt) + len(live.tokens) >= max_seq_len
    return "length" if len(live.tokens) >= config.max_new_tokens or full else None


def _ready(text: str, stops: tuple[str, ...]) -> int:
    """Characters of ``text`` safe to stream: hold back a partial UTF-8 sequence and any
    tail that could still become a stop string."""
    ready = len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, ready), 0, -1):
            if text[:ready].endswith(stop[:k]):
                ready -= k
                break
    return ready


def _json_root(route: Route) -> str:
    """``{`` or ``[`` when the task's schema requires an object or an array at the top."""
    schema = route.task.output.schema if route.task else None
    kind = (schema or {}).get("type")
    return {"object": "{", "array": "["}.get(kind, "") if isinstance(kind, str) else ""
