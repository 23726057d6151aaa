"""Labelling at scale: shards of a task's inputs, and a bounded pool of concurrent teacher calls.

- A :class:`Shard` ``i/N`` owns the inputs whose SHA-256 (of the UTF-8 text) is ``i``
  modulo N: the split depends on nothing but the text, so N processes or machines given
  the same inputs in any order label disjoint sets that together cover them all. Each
  shard keeps its own journal (``TASK.shard-I-of-N.journal.jsonl``);
  :func:`tinyllm.distill.labelmerge.merge_shards` merges them at the end.
- :func:`label_concurrently` keeps up to ``concurrency`` chunks of inputs at the teacher
  at once (threads: the teacher's HTTP client, retries, backoff and rate limit are shared
  and thread-safe) and hands each finished chunk to one writer, the calling thread, in
  the order they finish. The window is bounded, so a crash loses at most ``concurrency``
  chunks of work. When a chunk fails, no new chunk starts; the chunks in flight finish and
  are kept, then the first error is raised: a rerun resumes from the journal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from tinyllm.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): the inputs whose hash is ``index`` mod ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard {self.index}/{self.count}: the count must be >= 1 and the index in "
                f"0..{self.count - 1}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` (as the CLI's ``--shard`` takes it) -> Shard(I, N)."""
        index, sep, count = text.partition("/")
        try:
            if not sep:
                raise ValueError(text)
            return cls(int(index), int(count))
        except ValueError:
            raise ConfigError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None

    def owns(self, text: str) -> bool:
        """Whether ``text`` belongs to this shard."""
        return shard_of(text, self.count) == self.index

    def select(self, inputs: Iterable[str]) -> list[str]:
        """The inputs of this shard, in their order."""
        return [text for text in inputs if self.owns(text)]

    @property
    def stem(self) -> str:
        """The file-name part of this shard's journal and stats (``shard-1-of-4``)."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(text: str, count: int) -> int:
    """The shard (0..count-1) that owns ``text``: its SHA-256 modulo ``count``."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def label_concurrently(
    chunks: Sequence[T],
    work: Callable[[T], R],
    on_done: Callable[[T, R], None],
    concurrency: int,
) -> None:
    """Run ``work`` on each chunk with at most ``concurrency`` in flight; ``on_done`` in
    the calling thread as each finishes.

    After the first failure no new chunk starts; those in flight finish (and reach
    ``on_done``), then that first error is raised.
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    pending = iter(chunks)
    in_flight: dict[Future[R], T] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="label") as pool:

        def start_next() -> None:
            for chunk in pending:
                in_flight[pool.submit(work, chunk)] = chunk
                return

        for _ in range(concurrency):
            start_next()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = in_flight.pop(future)
                failure = future.exception()
                if failure is not None:
                    error = error or failure
                    continue
                on_done(chunk, future.result())
                if error is None:
                    start_next()
    if error is not None:
        raise error
