"""An ``ort`` session's arrays on a device: KV buffers, adapter stacks and logits.

With ``device`` set (``"cuda"``; ``"cpu"`` runs the same code on the CPU so tests can
check it), a decoder session of the ``ort`` flavour keeps these as ONNX Runtime
OrtValues on that device, laid out as :mod:`tinyllm.runtime.deviceplan` plans: rows are
bound by address inside each KV buffer (a run of rows of ``[B, KV, S, H]`` is
contiguous), the per-step inputs are uploaded explicitly, and only the logits (or only
the greedy ids) of the rows run come back. Every transfer is recorded:
:attr:`DeviceBuffers.copies` holds the last step's, :attr:`DeviceBuffers.setup_copies`
those outside steps (uploads of adapters, KV rows read or written), so tests compare
them with the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.runtime.kvbuffers import lazy_zeros

if TYPE_CHECKING:
    from tinyllm.runtime.deviceplan import Copy


class DeviceBuffers:
    """The device-resident KV, adapter stacks and logits of one ``ort`` session, with
    the IO bindings over them and a record of every host <-> device copy."""

    def __init__(
        self,
        sess: Any,
        device: str,
        kv_shape: tuple[int, int, int, int],
        layers: int,
        dtype: np.dtype,
        vocab: int,
        *,
        greedy_ids: bool,
    ) -> None:
        """``kv_shape``: ``[B, KV, S, H]`` of each of the ``2 * layers`` buffers (key then
        value of each layer); ``vocab``: the logits' width; ``greedy_ids``: the graph
        outputs each row's argmax. The buffers start zeroed; the adapter stacks come with
        :meth:`set_lora`."""
        from onnxruntime import OrtValue

        self.sess = sess
        self.device = device
        self.kv_shape = kv_shape
        self.dtype = dtype
        self.vocab = vocab
        self.greedy_ids = greedy_ids
        self.layers = layers
        self.copies: list[Copy] = []  # transfers of the last step
        self.setup_copies: list[Copy] = []  # transfers outside steps (uploads, KV rows)
        self.kv: list[Any] = []
        for i in range(2 * self.layers):
            # Zeroed pages: on "cpu" wrapped as is (resident as written), else uploaded.
            zeros = lazy_zeros(kv_shape, dtype)
            self._count("setup", f"kv.{i}", "h2d", kv_shape, dtype.name)
            self.kv.append(OrtValue.ortvalue_from_numpy(zeros, device, 0))
        self.lora: dict[str, Any] = {}
        self._out: dict[tuple[int, int, int], Any] = {}
        self._ids: dict[tuple[int, int], Any] = {}
        self._bindings: dict[tuple[int, int, int], Any] = {}

    def rebind(self, sess: Any) -> None:
        """Run on ``sess`` (another session of the same graph) from the next step on."""
        self.sess = sess
        self._bindings.clear()

    def set_lora(self, lora: dict[str, np.ndarray]) -> None:
        """Upload the stacked adapter tensors into device memory of their own (ONNX
        Runtime's, on "cpu" too: not a view of the arrays) and bind those from now on."""
        from onnxruntime import OrtValue

        self._bindings.clear()
        self.lora = {}
        for name, tensor in lora.items():
            self._count("setup", name, "h2d", tensor.shape, tensor.dtype.name)
            value = OrtValue.ortvalue_from_shape_and_type(
                tensor.shape, self.dtype.type, self.device, 0
            )
            value.update_inplace(tensor)
            self.lora[name] = value

    def sync_lora(self, lora: dict[str, np.ndarray]) -> None:
        """Upload the adapter tensors again into the device copies :meth:`set_lora` made
        (the host arrays were written in place)."""
        for name, tensor in lora.items():
            self._count("setup", name, "h2d", tensor.shape, tensor.dtype.name)
            self.lora[name].update_inplace(tensor)

    def read_kv(self, row: int, n: int) -> list[np.ndarray]:
        """Host copies of the first ``n`` positions of ``row`` in every KV buffer.

        Each whole buffer comes back (ONNX Runtime's Python API copies whole OrtValues):
        right, but costly; see docs/gpu.md."""
        return [
            self._download(f"kv.{i}", v, "setup")[row, :, :n].copy() for i, v in enumerate(self.kv)
        ]

    def write_kv(self, row: int, kv: Sequence[np.ndarray]) -> None:
        """Put ``kv`` (from :meth:`read_kv`) at the first positions of ``row`` (each whole
        buffer goes down and up again)."""
        for i, (value, part) in enumerate(zip(self.kv, kv, strict=True)):
            whole = self._download(f"kv.{i}", value, "setup")
            whole[row, :, : part.shape[1]] = part
            self._count("setup", f"kv.{i}", "h2d", whole.shape, whole.dtype.name)
            value.update_inplace(whole)

    def run(
        self,
        feeds: dict[str, np.ndarray],
        total: np.ndarray,
        start: int,
        b: int,
        width: int,
        want_logits: bool = True,
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One step over rows [start, start + b): upload ``feeds``, run on the bound device
        buffers, bring back those rows' greedy ids ``[b]`` (where the graph has them and
        ``width`` is 0) and, when ``want_logits``, their logits ``[b, V]`` (``[1, width,
        V]`` for a verify step of ``width`` positions); without them the logits stay on
        the device. Returns ``(ids, logits)``, each None where not brought back."""
        self.copies = []
        io = self._binding(b, start, width)
        for name, value in feeds.items():
            io.bind_ortvalue_input(name, self._upload(name, value))
        # A CPU input of GroupQueryAttention on every provider: read on the host, no copy.
        io.bind_cpu_input("total_sequence_length", total)
        self.sess.run_with_iobinding(io)
        ids = None
        if self.greedy_ids and not width:  # [b] int64: small beside the logits
            ids = self._download("greedy_ids", self._ids[start, b])
        if not want_logits:
            return ids, None
        return ids, self._download("logits", self._out[start, b, width])

    def _binding(self, b: int, start: int, width: int) -> Any:
        """An IO binding over rows [start, start + b) of the device KV buffers (bound by
        address: a row block of ``[B, KV, S, H]`` is contiguous), the device adapter
        stacks and a device logits buffer for those rows (made once per shape)."""
        key = (start, b, width)
        if key not in self._bindings:
            from onnxruntime import OrtValue

            io = self.sess.io_binding()
            shape = (b, *self.kv_shape[1:])
            offset = start * int(np.prod(self.kv_shape[1:])) * self.dtype.itemsize
            for i in range(self.layers):
                for j, kind in enumerate(("key", "value")):
                    ptr = self.kv[2 * i + j].data_ptr() + offset
                    args = (self.device, 0, self.dtype.type, shape, ptr)
                    io.bind_input(f"past_{kind}.{i}", *args)
                    io.bind_output(f"present_{kind}.{i}", *args)
            rows = (1, width) if width else (b,)
            logits = OrtValue.ortvalue_from_shape_and_type(
                (*rows, self.vocab), self.dtype.type, self.device, 0
            )
            self._out[key] = logits
            io.bind_ortvalue_output("logits", logits)
            if self.greedy_ids and not width:  # the same binding serves both kinds of step
                ids = OrtValue.ortvalue_from_shape_and_type((b,), np.int64, self.device, 0)
                self._ids[start, b] = ids
                io.bind_ortvalue_output("greedy_ids", ids)
            for name, value in self.lora.items():  # bound once, uploaded by set_lora
                io.bind_ortvalue_input(name, value)
            self._bindings[key] = io
        return self._bindings[key]

    def _count(self, kind: str, name: str, direction: str, shape: Any, dtype: str) -> None:
        """Record one transfer (``kind`` "step": of the current step, else setup)."""
        from tinyllm.runtime.deviceplan import Copy  # only device sessions need it

        copy = Copy(name, "h2d" if direction == "h2d" else "d2h", tuple(shape), dtype)
        (self.copies if kind == "step" else self.setup_copies).append(copy)

    def _upload(self, name: str, value: np.ndarray) -> Any:
        """``value`` as an OrtValue on the device (one counted h2d copy)."""
        from onnxruntime import OrtValue

        value = np.ascontiguousarray(value)
        self._count("step", name, "h2d", value.shape, value.dtype.name)
        return OrtValue.ortvalue_from_numpy(value, self.device, 0)

    def _download(self, name: str, value: Any, kind: str = "step") -> np.ndarray:
        """A host copy of a device OrtValue (one counted d2h copy)."""
        out = np.array(value.numpy(), copy=True)
        self._count(kind, name, "d2h", out.shape, out.dtype.name)
        return out
