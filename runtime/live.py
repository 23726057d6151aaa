"""Engine-side state of one request in flight, and its stop rules.

The decode loop (:mod:`tinyllm.runtime.serving`) keeps one :class:`Live` per request it
runs: the tokens and text so far, the sampling generator, the JSON constraint state, the
cached prefix to copy into its row. Plain data and pure functions, no session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

import numpy as np

from tinyllm.runtime.callconstraint import CallPrefix
from tinyllm.runtime.constraints import JsonPrefix, Prefix
from tinyllm.runtime.prefixcache import CachedPrefix
from tinyllm.runtime.router import Route, TaskOutput

Sink = Callable[[tuple[str, Any]], object]


class Live:
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
        self.error: Exception | None = None
        self.json: Prefix | None = None
        if route.json:
            self.json = CallPrefix(route.tools) if route.tools else JsonPrefix(json_root(route))
        self.prefix: CachedPrefix | None = None  # cached KV to copy into the row first
        self.fill_cache = False  # store this request's prefix KV once it is prefilled
        self.deadline: float | None = None  # time.monotonic() seconds; set by the server

    @property
    def key(self) -> tuple[str, int, str]:
        """The prefix cache key: (task, adapter slot, prefix variant: the shots, if any)."""
        name = self.route.task.name if self.route.task else ""
        return (name, self.route.slot, self.route.variant)

    @property
    def kv_len(self) -> int:
        """Tokens of this row in the KV cache once decoding (the last one is fed next)."""
        return len(self.route.prompt) + len(self.tokens) - 1

    def resolve(self, result: Any, error: BaseException | None) -> None:
        """End the stream and settle the future (unless the caller cancelled it)."""
        self.emit(("end", result))
        if self.future.done():
            return
        try:
            if error is None:
                self.future.set_result(result)
            else:
                self.future.set_exception(error)
        except InvalidStateError:  # cancelled by the caller meanwhile
            pass

    def emit(self, item: tuple[str, Any]) -> None:
        """Send a stream item to the request's consumer, if any (a failing one is dropped)."""
        if self.sink is not None:
            try:
                self.sink(item)
            except Exception:  # a closed consumer loop must not stop serving
                self.sink = None


def stopped(live: Live, max_seq_len: int) -> str | None:
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


def ready(text: str, stops: tuple[str, ...]) -> int:
    """Characters of ``text`` safe to stream: hold back a partial UTF-8 sequence and any
    tail that could still become a stop string."""
    count = len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, count), 0, -1):
            if text[:count].endswith(stop[:k]):
                count -= k
                break
    return count


def json_root(route: Route) -> str:
    """``{`` or ``[`` when the task's schema requires an object or an array at the top."""
    schema = route.task.output.schema if route.task else None
    kind = (schema or {}).get("type")
    return {"object": "{", "array": "["}.get(kind, "") if isinstance(kind, str) else ""


class Counters:
    """The loop's request and token counts, in total and per task."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(
            ("submitted", "completed", "failed", "cancelled", "rejected", "invalid"), 0
        )
        self.tokens = {"prompt": 0, "output": 0}
        self.per_task: dict[str, dict[str, int]] = {}
        self.peak_batch_rows = 0  # the most requests one batched prefill or decode run carried
        self.runs = 0  # engine runs: prefills, batched decode steps, verify steps
        # Decode runs, the rows they computed and the rows that took a token (the rest
        # were placeholders: rows inside a run whose request skipped the step).
        self.decode = {"runs": 0, "rows": 0, "tokens": 0}

    def count(self, task: str | None, what: str) -> None:
        """One more request of ``task`` (None: a plain completion) submitted, failed..."""
        self.counts[what] += 1
        counts = self.per_task.setdefault(task or "<completion>", {})
        counts[what] = counts.get(what, 0) + 1

    def completed(self, live: Live, valid: bool) -> None:
        """A request completed (its output ``valid`` or not)."""
        self.count(live.route.task.name if live.route.task else None, "completed")
        self.counts["invalid"] += not valid
        self.tokens["prompt"] += len(live.route.prompt)
        self.tokens["output"] += len(live.tokens)

    def decoded(self, rows: int, tokens: int) -> None:
        """One decode run computed ``rows`` rows, ``tokens`` of which took a token."""
        self.decode["runs"] += 1
        self.decode["rows"] += rows
        self.decode["tokens"] += tokens

    def stats(self) -> dict[str, Any]:
        """Totals, token counts and per-task counts (plain data)."""
        return {
            **self.counts,
            "prompt_tokens": self.tokens["prompt"],
            "output_tokens": self.tokens["output"],
            "peak_batch_rows": self.peak_batch_rows,
            "engine_runs": self.runs,
            "decode_runs": self.decode["runs"],
            "decode_rows": self.decode["rows"],
            "decode_placeholder_rows": self.decode["rows"] - self.decode["tokens"],
            "tasks": {k: dict(v) for k, v in self.per_task.items()},
        }
