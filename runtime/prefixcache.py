"""The per-task prefix cache: the KV of the prompt text every request of a task starts with.

An entry is keyed by (task, adapter slot, variant) and holds the token ids of the task's
fixed prefix and their keys and values in every layer. The variant is "" for the task's
own prefix (its instruction); a request with worked examples (shots) before its input has
the shots as its variant, and its prefix runs through them. A request whose prompt starts with
``n`` of those ids gets them copied into its KV row and prefills only the rest: exact,
since a causal model's KV at a position depends only on the tokens up to it. Entries are
filled from the first request's own prefill (no extra model run), bounded in bytes and
evicted least recently used; adding, removing or re-filling a task's adapter drops its
entries. Arrays are never changed once stored, so a request may hold an entry that is
evicted meanwhile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tinyllm.tasktable import common_prefix

Key = tuple[str, int, str]


@dataclass(frozen=True)
class CachedPrefix:
    """Token ids of a task's fixed prefix and their KV (one array per KV buffer)."""

    ids: tuple[int, ...]
    kv: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the KV arrays."""
        return sum(a.nbytes for a in self.kv)


class PrefixCache:
    """Bounded LRU of :class:`CachedPrefix` by (task, slot, variant).

    Args:
        max_bytes: the memory the entries may hold (0: the cache is off).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Key, CachedPrefix] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.tokens_saved = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(e.nbytes for e in self.entries.values())

    def lookup(self, key: Key, prompt: Sequence[int], prefix_len: int) -> CachedPrefix | None:
        """The entry and how much of ``prompt`` it covers, as a view cut to that length.

        At least one prompt token is left to prefill (it yields the first logits).
        """
        if self.max_bytes <= 0 or prefix_len <= 0:
            return None
        entry = self.entries.get(key)
        n = 0 if entry is None else min(common_prefix(entry.ids, prompt), len(prompt) - 1)
        if entry is None or n <= 0:
            self.misses += 1
            return None
        self.entries.move_to_end(key)
        self.hits += 1
        self.tokens_saved += n
        return CachedPrefix(entry.ids[:n], tuple(a[:, :n] for a in entry.kv))

    def wants(self, key: Key, prefix_len: int) -> bool:
        """Whether a request with this key should fill the cache from its prefill."""
        return self.max_bytes > 0 and prefix_len > 0 and key not in self.entries

    def store(self, key: Key, ids: Sequence[int], kv: Sequence[np.ndarray]) -> None:
        """Keep ``kv`` (arrays ``[KV heads, len(ids), head_dim]``) for ``key``, evicting the
        least recently used entries to stay within ``max_bytes``."""
        entry = CachedPrefix(tuple(ids), tuple(kv))
        if entry.nbytes > self.max_bytes:
            return
        self.entries.pop(key, None)
        while self.entries and self.nbytes + entry.nbytes > self.max_bytes:
            self.entries.popitem(last=False)
        self.entries[key] = entry

    def drop(self, task: str | None = None, slot: int | None = None) -> None:
        """Forget the entries of ``task`` and of adapter ``slot`` (None: every entry)."""
        for key in list(self.entries):
            if (task is None and slot is None) or key[0] == task or key[1] == slot:
                del self.entries[key]

    def stats(self) -> dict[str, int]:
        """Entries, bytes held and allowed, hits, misses, prompt tokens not prefilled."""
        return {
            "entries": len(self.entries),
            "bytes": self.nbytes,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "tokens_saved": self.tokens_saved,
        }
