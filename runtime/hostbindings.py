"""The IO bindings of an ``ort`` session whose arrays live in host memory.

The ``ort`` flavour's graph reads and writes each layer's KV buffer in place: past and
present are bound to the same memory, and GroupQueryAttention writes each row's new
key/value at that row's own position, so a step makes no copies. A step binds OrtValues
over a run of rows of the KV buffers, of the logits buffer and of the greedy ids buffer;
each binding is made once per run shape and kept. A decode run goes one step further
(:meth:`HostBindings.decode`): its inputs are small arrays bound once to its binding and
rewritten in place each step, so a decode step binds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class HostBindings:
    """The kept IO bindings of one ``ort`` session over its host KV, logits and ids."""

    def __init__(
        self,
        sess: Any,
        kv: list[np.ndarray],
        logits_buf: np.ndarray,
        ids_buf: np.ndarray,
        *,
        greedy_ids: bool,
        lora_slots: int,
    ) -> None:
        """``kv``: the ``2 * layers`` buffers ``[B, KV, S, H]`` (key then value of each
        layer); ``logits_buf [B, V]`` and ``ids_buf [B]`` int64: where steps leave each
        row's logits and greedy ids; ``greedy_ids``: the graph outputs them;
        ``lora_slots``: the graph takes ``lora_index``. The adapter stacks come with
        :meth:`rebind`."""
        self.sess = sess
        self.kv = kv
        self.logits_buf = logits_buf
        self.ids_buf = ids_buf
        self.greedy_ids = greedy_ids
        self.lora_slots = lora_slots
        self.lora: dict[str, np.ndarray] = {}
        self._views: dict[tuple[int, int], list[Any]] = {}
        self._bindings: dict[tuple[Any, ...], Any] = {}
        self._decode_feeds: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        self._verify_logits: dict[int, np.ndarray] = {}

    def rebind(self, sess: Any, lora: dict[str, np.ndarray]) -> None:
        """Run on ``sess`` with the adapter stacks ``lora`` (bound in place, not copied)
        from the next step on: the kept bindings are dropped."""
        self.sess = sess
        self.lora = lora
        self._bindings.clear()

    def run(
        self, feeds: dict[str, np.ndarray], start: int, b: int, width: int, want_logits: bool
    ) -> np.ndarray | None:
        """One step over rows [start, start + b), ``feeds`` bound as host inputs.

        The rows' logits (when ``want_logits``) and greedy ids (where the graph has them)
        land in the buffers; ``width`` > 0 (a verify step of one row): returns the logits
        at that many positions ``[1, width, V]``, else None."""
        io = self._binding(b, start, width, want_logits)
        for name, value in feeds.items():
            io.bind_cpu_input(name, value)
        self.sess.run_with_iobinding(io)
        return self._verify_logits[width] if width else None

    def decode(
        self,
        tokens: Sequence[int],
        held: np.ndarray,
        lora_index: np.ndarray | Sequence[int] | None,
        start: int,
        want_logits: bool,
    ) -> None:
        """A decode step of rows [start, start + len(tokens)) that hold ``held`` tokens:
        the inputs are written into the arrays bound to the run's binding, nothing is
        bound; the rows' logits (when ``want_logits``) and greedy ids land in the buffers."""
        io, feeds = self._decode_binding(len(tokens), start, want_logits)
        feeds["input_ids"][:, 0] = tokens
        feeds["seqlens_k"][:] = held  # each row's length after this token, minus one
        feeds["total_sequence_length"][...] = int(held.max()) + 1
        if "lora_index" in feeds:
            feeds["lora_index"][:] = 0 if lora_index is None else lora_index
        self.sess.run_with_iobinding(io)

    def _bound(self, b: int, start: int = 0) -> list[Any]:
        """OrtValues over rows [start, start + b) of every KV buffer, the logits buffer and
        the greedy ids buffer."""
        if (start, b) not in self._views:
            from onnxruntime import OrtValue

            arrays = [*self.kv, self.logits_buf, self.ids_buf]
            rows = slice(start, start + b)
            self._views[start, b] = [OrtValue.ortvalue_from_numpy(a[rows]) for a in arrays]
        return self._views[start, b]

    def _binding(
        self,
        b: int,
        start: int = 0,
        width: int = 0,
        logits: bool = True,
        key: tuple[Any, ...] | None = None,
    ) -> Any:
        """An IO binding for rows [start, start + b), KV buffers, logits (unless not
        ``logits``) and greedy ids (where the graph has them) bound (made once, kept under
        ``key``, by default ``(start, b, width)``, or ``(start, b, -1)`` without logits);
        ``width`` > 0: one row's logits at that many positions (verify steps)."""
        key = key or ((start, b, width) if logits else (start, b, -1))
        if key not in self._bindings:
            from onnxruntime import OrtValue

            io = self.sess.io_binding()
            views = self._bound(b, start)
            for i in range(len(self.kv) // 2):
                for j, kind in enumerate(("key", "value")):
                    io.bind_ortvalue_input(f"past_{kind}.{i}", views[2 * i + j])
                    io.bind_ortvalue_output(f"present_{kind}.{i}", views[2 * i + j])
            if width:
                shape = (1, width, self.logits_buf.shape[1])
                out = self._verify_logits.setdefault(width, np.zeros(shape, self.logits_buf.dtype))
                io.bind_ortvalue_output("logits", OrtValue.ortvalue_from_numpy(out))
            elif logits:
                io.bind_ortvalue_output("logits", views[-2])
            if self.greedy_ids and not width:  # unbound outputs are not fetched
                io.bind_ortvalue_output("greedy_ids", views[-1])
            for name, tensor in self.lora.items():  # bound once, not copied per step
                io.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(tensor))
            self._bindings[key] = io
        return self._bindings[key]

    def _decode_binding(
        self, b: int, start: int, logits: bool
    ) -> tuple[Any, dict[str, np.ndarray]]:
        """The IO binding of decode runs over rows [start, start + b) (with or without
        the logits), and the input arrays bound to it (made once; ``logits_index`` stays
        0: one position per row)."""
        key = (start, b, "decode", logits)
        if key not in self._bindings:
            from onnxruntime import OrtValue

            feeds: dict[str, np.ndarray] = {
                "input_ids": np.zeros((b, 1), np.int64),
                "logits_index": np.zeros(b, np.int64),
                "seqlens_k": np.zeros(b, np.int32),
                "total_sequence_length": np.zeros((), np.int32),
            }
            if self.lora_slots:
                feeds["lora_index"] = np.zeros(b, np.int64)
            io = self._binding(b, start, 0, logits, key)
            for name, value in feeds.items():
                io.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(value))
            self._decode_feeds[key] = feeds
        return self._bindings[key], self._decode_feeds[key]
