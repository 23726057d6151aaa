"""The decode loop: one background thread runs every request on one engine.

Task requests, plain completions, ``Engine.generate``/``stream`` and evaluation all come
here. Requests join between decode steps (see :mod:`tinyllm.runtime.scheduler`); each KV
row decodes with its adapter slot (``lora_index`` per row); a request whose prompt starts
with its task's cached prefix (:mod:`tinyllm.runtime.prefixcache`) gets that KV copied
into its row and prefills only the rest. Callers get futures; the loop owns the session,
so the public calls are thread-safe.

On an engine exported with ``greedy_ids``, a step whose rows taking a token all decode
greedily with no constraint (:func:`needs_logits`) reads the graph's greedy ids instead
of the logits (on CUDA the logits then stay on the GPU); one row that samples or is
constrained makes the step bring back every row's logits, as without the option.
Speculative verify steps always read logits.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tinyllm.errors import (
    ConfigError,
    DeadlineExceededError,
    EngineClosedError,
    PromptTooLongError,
    QueueFullError,
    RequestCancelledError,
    TinyLLMError,
    UnknownTaskError,
)
from tinyllm.runtime.constraints import pick_json_token
from tinyllm.runtime.live import Counters, Live, Sink, ready, stopped
from tinyllm.runtime.prefixcache import CachedPrefix, PrefixCache
from tinyllm.runtime.router import Route, Router, TaskOutput, mask_logits
from tinyllm.runtime.sampling import sample
from tinyllm.runtime.scheduler import PrefillRow, Request, Scheduler, SchedulerConfig, StepPlan
from tinyllm.runtime.session import DecoderSession
from tinyllm.runtime.slots import AdapterSlots
from tinyllm.runtime.speculative import Forcing, SpeculationOptions, SpeculationStats, drafts_for
from tinyllm.runtime.stopwatch import NO_WATCH, StepRecorder, Stopwatch
from tinyllm.runtime.toolrunner import ToolRunner

__all__ = ["Server", "ServingOptions", "Sink"]


@dataclass(frozen=True)
class ServingOptions:
    """How the engine serves tasks (see :class:`SchedulerConfig` for the scheduling knobs).

    ``constrain`` restricts label tasks' tokens to their label set (a token trie) and
    JSON tasks' to valid JSON; ``prefix_cache_mb`` bounds the per-task prefix cache;
    ``speculation``: prompt-lookup drafts for greedy rows whose config asks for them
    (:mod:`tinyllm.runtime.speculative`).
    """

    scheduler: SchedulerConfig
    constrain: bool = True
    prefix_cache_mb: float = 64.0
    speculation: SpeculationOptions = field(default_factory=SpeculationOptions)

    def __post_init__(self) -> None:
        if not 0 <= self.prefix_cache_mb < float("inf"):
            raise ConfigError(f"prefix_cache_mb must be >= 0, got {self.prefix_cache_mb}")


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
        self.cache = PrefixCache(int(options.prefix_cache_mb * 2**20))
        self.speculation = options.speculation
        self.spec_stats = SpeculationStats()
        self.forcing = Forcing(
            router.tokenizer.encode, router.token_text, lambda: router.json_tokens
        )
        slots.bind(session)
        self.live: dict[int, Live] = {}
        self.ids = itertools.count()
        self.cond = threading.Condition()
        self.closing = False
        self.drain = True
        self.thread: threading.Thread | None = None
        self.counters = Counters()
        self.recorder: StepRecorder | None = None  # a profiler's (tinyllm profile)
        self.watch: Stopwatch = NO_WATCH  # the loop thread's, for this iteration
        self.tool_runner = ToolRunner(router, self.submit)

    def submit(
        self, route: Route, deadline_s: float | None, sink: Sink | None, wait: bool = False
    ) -> Future[Any]:
        """Queue a routed request; raises at once when closed, too long, or full (unless
        ``wait``: then it waits for room in the queue)."""
        self.check_prompt(route.prompt)
        future: Future[TaskOutput] = Future()
        name = route.task.name if route.task else None
        with self.cond:
            while True:
                if self.closing:
                    raise EngineClosedError(
                        "the engine is closed; load a new one to serve requests"
                    )
                if name is not None and self.router.slot(name) != route.slot:
                    raise UnknownTaskError(
                        f"task {name!r} was removed while the request was routed"
                    )
                rid = next(self.ids)
                request = self._request(rid, route, deadline_s)
                try:
                    self.scheduler.admit(request)
                    break
                except QueueFullError:
                    if not wait:
                        self.counters.counts["rejected"] += 1
                        raise
                    self.cond.wait()
            live = Live(rid, route, future, sink)
            live.deadline = request.deadline  # the tool runner's second request keeps it
            self._use_cache(live, request)
            self.slots.acquire(route.slot)
            self.live[rid] = live
            self.counters.count(name, "submitted")
            if self.thread is None:
                self.thread = threading.Thread(target=self._loop, name="tinyllm-serve", daemon=True)
                RUNNING.add(self)
                self.thread.start()
            self.cond.notify_all()
        future.add_done_callback(lambda f: self._on_done(rid, f))
        return future

    def check_prompt(self, ids: list[int], what: str = "the prompt") -> None:
        """Reject an empty prompt, or one that leaves no room in the context."""
        limit = self.session.spec.max_seq_len
        if not ids:
            raise ConfigError(f"{what} is empty: it has no tokens")
        if len(ids) >= limit:
            raise PromptTooLongError(
                f"{what} has {len(ids)} tokens; the engine's context is {limit} tokens "
                "(prompt plus output): shorten the input, or load the engine with a larger "
                "max_seq_len"
            )

    def _request(self, rid: int, route: Route, deadline_s: float | None) -> Request:
        now = time.monotonic()
        return Request(
            rid,
            route.task.name if route.task else "",
            len(route.prompt),
            route.config.max_new_tokens,
            now,
            None if deadline_s is None else now + deadline_s,
        )

    def _use_cache(self, live: Live, request: Request) -> None:
        """Give the request its task's cached prefix, or let it fill the cache."""
        if self.scheduler.config.policy != "continuous":
            return
        prefix = self.cache.lookup(live.key, live.route.prompt, live.route.prefix_len)
        if prefix is not None:
            live.prefix = prefix
            request.cached = len(prefix.ids)
        else:
            live.fill_cache = self.cache.wants(live.key, live.route.prefix_len)

    def adapter_slot(self, task: str, load: Callable[[str], Any]) -> int:
        """A slot holding ``task``'s adapter (``load(task)`` gives it): the served task's
        slot, else one filled for ``generate(adapter=task)`` the first time."""
        with self.cond:
            slot = self.router.slot(task) or 0
            if slot:
                return slot
            owner = self.slots.owner
            if task in owner:
                return owner.index(task)
            return self.slots.fill(task, load(task))

    def _on_done(self, rid: int, future: Future[Any]) -> None:
        if future.cancelled():
            with self.cond:
                self.scheduler.cancel(rid)
                self.cond.notify()

    def close(self, drain: bool) -> None:
        """Stop accepting requests; finish (``drain``) or fail those in flight; join."""
        RUNNING.discard(self)
        if drain:
            self.tool_runner.drain()  # calls being run may still decode their answers
        with self.cond:
            self.closing = True
            self.drain = drain
            self.cond.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.scheduler.requests and not self.closing:
                    self.cond.wait()
                recorder = self.recorder
                watch = self.watch = NO_WATCH if recorder is None else recorder.watch()
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
                prefixes = {
                    p.request: self.live[p.request].prefix
                    for group in plan.prefill
                    for p in group
                    if p.start > 0 and p.start == self.scheduler.requests[p.request].cached
                }
                watch.lap("scheduler")
            decoded = plan.decode
            try:
                decoded = self._step(plan, rows, prefixes)
            except Exception as e:  # the session failed: fail what ran, keep serving
                with self.cond:
                    self._fail(list(rows.values()), TinyLLMError(f"the engine step failed: {e}"))
            if recorder is not None:  # it sees the rows that took a token from a decode run
                recorder.step(watch, replace(plan, decode=decoded), rows)

    def _fail(self, ids: list[int], error: Exception) -> None:
        """Remove requests from the scheduler and fail them (call with the lock held)."""
        for rid in ids:
            if rid in self.scheduler.requests:
                self.scheduler.finish(rid, observe=False)
                self._end(rid, error)

    def _step(
        self, plan: StepPlan, rows: dict[int, int], prefixes: dict[int, CachedPrefix | None]
    ) -> list[int]:
        """Run one planned step; returns the requests that took a token after the prefills."""
        for group in plan.prefill:
            self._prefill(group, prefixes)
        # A row its prefill's first token ended (or failed) does not decode.
        ready = [rid for rid in plan.decode if not self.live[rid].done]
        drafts = drafts_for(
            [self.live[rid] for rid in ready],
            self.speculation if self.session.verifies else None,
            self.session.spec.max_seq_len,
            self.forcing,
        )
        plain = [rid for rid in ready if rid not in drafts]
        if plain:
            self._decode(set(plain), rows)
        # After the batched run: it wrote a placeholder at each drafting row's next position.
        for row, rid in rows.items():
            if rid in drafts:
                self._verify(self.live[rid], row, *drafts[rid])
                self.watch.lap("decode")
        with self.cond:
            for rid in [rid for rid, live in self.live.items() if live.done]:
                if rid in self.scheduler.requests:
                    live = self.live[rid]
                    self.scheduler.finish(rid, observe=live.error is None)
                    self._end(rid, live.error)
            self.cond.notify_all()  # room in the queue for waiting submitters
        self.watch.lap("finish")
        return ready

    def _prefill(self, group: list[PrefillRow], prefixes: dict[int, CachedPrefix | None]) -> None:
        """Prefill one group of rows (one run); rows whose prompt is done take a token."""
        watch = self.watch
        lives = [self.live[p.request] for p in group]
        self.counters.peak_batch_rows = max(self.counters.peak_batch_rows, len(group))
        for p in group:
            prefix = prefixes.get(p.request)
            if prefix is not None:  # a fresh row starts from its task's cached prefix
                self.session.write_kv(p.row, prefix.kv)
                watch.lap("prefix_copy")
        self.counters.runs += 1
        chunks = [live.route.prompt[p.start : p.end] for p, live in zip(group, lives, strict=True)]
        past = [p.start for p in group]
        slots = np.array([live.route.slot for live in lives])
        ending = [
            live for p, live in zip(group, lives, strict=True) if p.end == len(live.route.prompt)
        ]
        if self.session.greedy_ids and not any(needs_logits(live) for live in ending):
            picks = self.session.prefill_ids(group[0].row, chunks, past, slots)
        else:
            picks = self.session.prefill_rows(group[0].row, chunks, past, slots)
        watch.lap("prefill")
        for p, live, pick in zip(group, lives, picks, strict=True):
            self.scheduler.prefilled(p.request, p.end)
            if live.fill_cache and p.end >= live.route.prefix_len:
                self._fill_cache(live, p.row)
            if p.end == len(live.route.prompt):
                live.ttft = time.perf_counter() - live.start
                self._advance(live, pick)

    def _decode(self, decode: set[int], rows: dict[int, int]) -> None:
        """One batched decode run over the rows from the lowest to the highest whose
        request is in ``decode``; those requests take a token."""
        watch = self.watch
        self.counters.peak_batch_rows = max(self.counters.peak_batch_rows, len(decode))
        taking = {row: rid for row, rid in rows.items() if rid in decode}
        low = min(taking)
        width = max(taking) + 1 - low
        tokens = [self.session.pad_id] * width
        lengths = [0] * width
        lora = [0] * width
        for row, rid in rows.items():
            if not low <= row < low + width:
                continue
            live = self.live[rid]
            request = self.scheduler.requests[rid]
            # Rows inside the run that skip this step write a placeholder at their next
            # position, which their real token overwrites when they run again.
            lengths[row - low] = live.kv_len if request.decoding else request.prefilled
            lora[row - low] = live.route.slot
            if rid in decode:
                tokens[row - low] = live.tokens[-1]
        self.counters.decoded(width, len(taking))
        watch.lap("scheduler")
        self.counters.runs += 1
        run = (
            self.session.decode_ids
            if self.session.greedy_ids and not any(needs_logits(self.live[r]) for r in decode)
            else self.session.decode
        )
        picks = run(tokens, lengths, lora, start=low)  # ids [width] or logits [width, V]
        watch.lap("decode")
        for row, rid in taking.items():
            self._advance(self.live[rid], picks[row - low])

    def _verify(self, live: Live, row: int, tokens: list[int], forced: bool = False) -> None:
        """Feed the row's next token and its draft (``forced``: text its constraint forces)
        in one run; pick tokens from the logits in order, exactly as plain steps would,
        keeping draft tokens while they match."""
        try:
            self.counters.runs += 1
            logits = self.session.verify(
                row, [live.tokens[-1], *tokens], live.kv_len, live.route.slot
            )
        except Exception as e:
            live.error = TinyLLMError(f"request {live.id} failed while verifying a draft: {e}")
            live.done = "error"
            return
        stats = self.spec_stats
        stats.steps += 1
        stats.drafted += len(tokens)
        stats.forced_steps += forced
        stats.forced_drafted += len(tokens) if forced else 0
        kept = self.accept(live, tokens, logits)
        stats.forced_accepted += kept if forced else 0

    def accept(self, live: Live, tokens: list[int], logits: np.ndarray) -> int:
        """Advance ``live`` by the logits ``[1 + len(tokens), V]`` of a verify run: each
        position's pick is the plain step's; stop after the first pick that differs from
        the draft (the row's later KV positions are then overwritten by later steps).
        Returns how many draft tokens were kept."""
        accepted = 0
        for j, row_logits in enumerate(logits):
            held = len(live.tokens)
            self._advance(live, row_logits)
            self.spec_stats.emitted += len(live.tokens) - held
            kept = j < len(tokens) and len(live.tokens) > held and live.tokens[-1] == tokens[j]
            accepted += kept
            if live.done or not kept:
                break
        self.spec_stats.accepted += accepted
        return accepted

    def _fill_cache(self, live: Live, row: int) -> None:
        """Store the KV of the request's task prefix, prefilled just now in ``row``."""
        live.fill_cache = False
        n = live.route.prefix_len
        kv = self.session.read_kv(row, n)
        with self.cond:
            if self.router.slot(live.key[0]) == live.route.slot:  # still served so
                self.cache.store(live.key, live.route.prompt[:n], kv)
        self.watch.lap("prefix_copy")

    def _advance(self, live: Live, pick: np.ndarray) -> None:
        """Sample one token for a row from its logits ``pick [V]`` (or take the graph's
        greedy id, ``pick`` a 0-d int array) and apply its stop rules; a failure fails the
        request alone (the other rows of the step go on)."""
        try:
            self._sample(live, pick)
        except Exception as e:
            live.error = (
                e
                if isinstance(e, TinyLLMError)
                else TinyLLMError(f"request {live.id} failed while decoding: {e}")
            )
            live.done = "error"

    def _sample(self, live: Live, logits: np.ndarray) -> None:
        """Sample one token for a row (from its logits, or its greedy id) and apply its
        stop rules."""
        route, config = live.route, live.route.config
        self.scheduler.decoded(live.id)
        if logits.ndim == 0:  # the graph's greedy id: only for rows that need no logits
            token = int(logits)
        else:
            if route.trie is not None:
                allowed = route.trie.allowed(live.tokens)
                if allowed:
                    logits = mask_logits(logits, allowed)
            if live.json is not None:
                json_tokens = self.router.json_tokens
                token = pick_json_token(live.json, logits, config, live.rng, json_tokens)
            else:
                token = sample(logits, config, live.rng)
        watch = self.watch
        watch.lap("sample")
        if self._take(live, token):
            watch.lap("detokenize")
            if live.json is not None:
                if not live.json.feed(self.router.token_text(token)):
                    live.json = None  # no token fitted: stop constraining, report it invalid
                elif live.json.mode == "done":
                    live.done = "stop"
            if route.trie is not None and not live.done:
                self._finish_label(live)
        count = len(live.text) if live.done else ready(live.text, config.stop)
        if route.tools and route.execute_tools:
            count = 0  # the call is not the answer: the tool runner streams that
        if count > live.sent:
            live.emit(("delta", live.text[live.sent : count]))
            live.sent = count
        watch.lap("sample")

    def _finish_label(self, live: Live) -> None:
        """Write the rest of a label that the trie forces to its end, without a model run.

        Where one token is all the label mask allows, masked greedy picks it and masked
        sampling draws it with probability 1, so appending it is exact on every engine.
        Only a chain that ends the label is written: the row then ends and needs no KV for
        it; a chain that meets a choice between labels is left to the model.
        """
        trie = live.route.trie
        assert trie is not None
        chain, prefix = [], list(live.tokens)
        while not trie.complete(prefix):
            allowed = trie.allowed(prefix)
            if len(allowed) != 1:
                return  # a choice ahead: the model makes it
            chain.append(allowed[0])
            prefix.append(allowed[0])
        for token in chain:
            if not self._take(live, token):
                return
            self.spec_stats.label_forwarded += 1
            if live.done:
                return

    def _take(self, live: Live, token: int) -> bool:
        """Write one token to a row, sampled or forwarded, and apply the stop rules both
        share: a stop id ends the row unwritten (unless the task ignores EOS); otherwise
        the text is decoded again and ``stopped`` says whether the row is done. Returns
        whether the token was written."""
        if token in self.stop_ids and not live.route.config.ignore_eos:
            live.done = "stop"
            return False
        live.tokens.append(token)
        live.text = self.router.tokenizer.decode(live.tokens)
        live.done = stopped(live, self.session.spec.max_seq_len)
        return True

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
                tuple(live.tokens),
            )
            self.counters.completed(live, valid)
        else:
            result = error
            kind = "cancelled" if isinstance(error, RequestCancelledError) else "failed"
            self.counters.count(name, kind)
        if self.recorder is not None:
            self.recorder.ended(live, error)
        if error is None and live.route.tools and live.route.execute_tools:
            # the call is written: run it off the loop
            self.tool_runner.take(live, result)
            return
        live.resolve(result, error)

    def stats(self) -> dict[str, Any]:
        """Queue depth, requests in flight, totals and per-task counts (plain data)."""
        with self.cond:
            running = len(self.scheduler.running)
            return {
                "queue_depth": len(self.scheduler.requests) - running,
                "running": running,
                "max_batch": self.scheduler.config.max_rows,
                "queue_size": self.scheduler.config.queue_size,
                **self.counters.stats(),
                "adapter_slots": self.slots.count,
                "adapter_slots_free": self.slots.free(),
                "kv_cache_bytes": self.session.kv_bytes,
                "prefix_cache": self.cache.stats(),
                "speculation": self.spec_stats.as_dict(),
            }


def needs_logits(live: Live) -> bool:
    """Whether the row's next token needs its logits on the host: it samples, or a label
    trie or a JSON / tool-call constraint picks it. Plain greedy rows do not (the graph's
    greedy id is the argmax of the same logits)."""
    return (
        live.route.config.temperature != 0 or live.route.trie is not None or live.json is not None
    )


# Decode loops still running when the interpreter exits: a daemon thread stopped inside
# ONNX Runtime's native code at finalization aborts the process ("terminate called
# without an active exception"), so exit closes each one first, failing what it held.
RUNNING: weakref.WeakSet[Server] = weakref.WeakSet()


@atexit.register
def close_at_exit() -> None:
    """Close every server still running (requests in flight fail with EngineClosedError)."""
    for server in list(RUNNING):
        server.close(drain=False)
