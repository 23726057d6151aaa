"""One exported decoder in an ONNX Runtime session, with its KV cache.

Both flavours keep one KV buffer per layer ``[max_batch, KV, max_seq, H]``; a row's
tokens sit at positions ``0..held-1`` of its row. ``prefill_rows`` writes prompt tokens
into chosen rows after the tokens they already hold, ``decode`` advances a run of rows
by one token; each returns the next-token logits ``[b, V]``.

The ``ort`` flavour binds the buffers as both past and present (IO binding, no per-step
copies; GroupQueryAttention writes each row's new key/value at that row's own position);
a decode run writes its inputs into small arrays bound once per run shape.
The ``standard`` flavour's graph concatenates past and new keys, so each call feeds the
rows' buffers up to the longest row, masks each row's unused positions, and copies the
new keys back into the rows (a copy per step: that flavour is for portability, not speed).

With ``device`` set (``"cuda"``; ``"cpu"`` runs the same code on the CPU so tests can
check it), an ``ort`` session keeps its KV buffers, adapter stacks and logits as
ONNX Runtime OrtValues on that device, laid out as :mod:`tinyllm.runtime.deviceplan`
plans: rows are bound by address inside each buffer, the per-step inputs are uploaded
explicitly, and only the logits of the rows run come back. Every transfer the session
makes is recorded (:attr:`DecoderSession.copies`), so tests compare it with the plan.
The ``standard`` flavour keeps host arrays (its graph concatenates the KV: it crosses
anyway).

An engine exported with ``greedy_ids`` also outputs each row's argmax. Every step but a
verify step then leaves those ids in :attr:`DecoderSession.ids` (a view, valid until the
next step, as the logits are), and :meth:`DecoderSession.prefill_ids` /
:meth:`DecoderSession.decode_ids` run a step that brings back the ids alone: a device
session leaves the logits on the device (``[b]`` int64 come back instead of ``[b, V]``),
a host session does not bind them, the ``standard`` flavour does not ask for them.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError, TinyLLMError

if TYPE_CHECKING:
    from tinyllm.runtime.deviceplan import Copy

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class SessionSpec:
    """What the session needs to know about the exported graph (from engine.json)."""

    flavour: str
    float_dtype: str
    max_seq_len: int
    lora_slots: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()


def lazy_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array whose memory becomes resident page by page, as it is written.

    For the KV buffers: a row then costs the tokens it holds, not the whole context.
    ``np.zeros`` would not do: numpy asks for transparent huge pages on large arrays
    (``madvise(MADV_HUGEPAGE)``), so the first tokens written into each head's plane make
    2 MiB resident (measured in docs/runtime.md: 127 MiB a row on SmolLM2 at 4096
    tokens). An anonymous map with ``MADV_NOHUGEPAGE`` keeps 4 KiB pages.
    """
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size == 0:
        return np.zeros(shape, dtype)
    memory = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux; elsewhere the OS's default pages
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(memory, dtype).reshape(shape)  # the array keeps the map alive


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def make_session(
    model: Path,
    device: str,
    threads: int | None,
    *,
    edited: bytes | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """An InferenceSession on ``device`` ("cpu" or "cuda"); a missing provider is an error.

    ``edited``: the model's bytes, changed (e.g. nodes named for a profile), loaded in
    place of the file; its external data still comes from the file's folder.
    ``profile_prefix``: turn on ONNX Runtime's profiler, writing JSON with this prefix.
    """
    import onnxruntime as ort

    if device not in PROVIDERS:
        raise ConfigError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
    if PROVIDERS[device] not in ort.get_available_providers():
        raise TinyLLMError(
            f"device={device!r} needs ONNX Runtime's {PROVIDERS[device]}, which this install "
            f"lacks (available: {', '.join(ort.get_available_providers())}); on a CUDA "
            "machine run `pip install 'tinyllm[gpu]'` (docs/gpu.md), then `tinyllm doctor` "
            "to see what this machine can run; or use device='cpu'"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if edited is not None:
        folder = str(model.parent)
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", folder
        )
    providers = [PROVIDERS[device]] + (["CPUExecutionProvider"] if device != "cpu" else [])
    source = str(model) if edited is None else edited
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise TinyLLMError(f"{model}: ONNX Runtime cannot load this engine ({e})") from e


class DecoderSession:
    """Runs prefill and decode steps of one exported decoder for up to ``max_batch`` rows."""

    def __init__(
        self,
        session: Any,
        config: ModelConfig,
        spec: SessionSpec,
        max_batch: int,
        pad_id: int,
        *,
        device: str | None = None,
    ) -> None:
        """``device``: None keeps every array in host memory; "cuda" (or "cpu", the same
        code on the CPU) keeps an ``ort`` session's KV, adapters and logits there as
        OrtValues (see the module docstring)."""
        if device is not None and device not in PROVIDERS:
            raise ConfigError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
        self.sess = session
        self.c = config
        self.spec = spec
        self.max_batch = max_batch
        self.pad_id = pad_id
        self.dtype = np.dtype(spec.float_dtype)
        self.layers = config.num_hidden_layers
        kv_shape = (max_batch, config.num_key_value_heads, spec.max_seq_len, config.head_dim)
        self.shared = spec.flavour == "ort"
        self.device = device if self.shared else None
        self.kv_shape = kv_shape
        self.copies: list[Copy] = []  # transfers of the last step (device sessions)
        self.setup_copies: list[Copy] = []  # transfers outside steps (uploads, KV rows)
        self.kv: list[np.ndarray] = []
        self.kv_dev: list[Any] = []
        if self.device is None:
            self.kv = [lazy_zeros(kv_shape, self.dtype) for _ in range(2 * self.layers)]
        else:
            from onnxruntime import OrtValue

            for i in range(2 * self.layers):
                # Zeroed pages: on "cpu" wrapped as is (resident as written), else uploaded.
                zeros = lazy_zeros(kv_shape, self.dtype)
                self._count("setup", f"kv.{i}", "h2d", kv_shape, self.dtype.name)
                self.kv_dev.append(OrtValue.ortvalue_from_numpy(zeros, self.device, 0))
        self.logits_buf = np.zeros((max_batch, config.vocab_size), self.dtype)
        self._views: dict[tuple[int, int], list[Any]] = {}
        self._bindings: dict[tuple[Any, ...], Any] = {}
        self._decode_feeds: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        self._verify_logits: dict[int, np.ndarray] = {}
        self._out_dev: dict[tuple[int, int, int], Any] = {}
        self._ids_dev: dict[tuple[int, int], Any] = {}
        self._lora_dev: dict[str, Any] = {}
        self.lora: dict[str, np.ndarray] = {}
        self.set_lora(self.empty_lora())
        # Engines exported with greedy_ids output each row's argmax (builder.py).
        self.greedy_ids = any(o.name == "greedy_ids" for o in session.get_outputs())
        self.ids_buf = np.zeros(max_batch, np.int64)
        self.ids: np.ndarray | None = None  # the greedy ids of the last step's rows
        index = {i.name: i for i in session.get_inputs()}.get("logits_index")
        # Engines exported before the verify step declare logits_index as [batch] only.
        self.verifies = index is not None and not (
            isinstance(index.shape, list) and len(index.shape) == 1
        )

    def use_session(self, session: Any) -> None:
        """Run on another InferenceSession of the same graph (a profiled one), from the
        next step on."""
        self.sess = session
        self._bindings.clear()

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV buffers."""
        return 2 * self.layers * int(np.prod(self.kv_shape)) * self.dtype.itemsize

    def _count(self, kind: str, name: str, direction: str, shape: Any, dtype: str) -> None:
        """Record one transfer (``kind`` "step": of the current step, else setup)."""
        from tinyllm.runtime.deviceplan import Copy  # only device sessions need it

        copy = Copy(name, "h2d" if direction == "h2d" else "d2h", tuple(shape), dtype)
        (self.copies if kind == "step" else self.setup_copies).append(copy)

    def _upload(self, name: str, value: np.ndarray) -> Any:
        """``value`` as an OrtValue on the session's device (one counted h2d copy)."""
        from onnxruntime import OrtValue

        value = np.ascontiguousarray(value)
        self._count("step", name, "h2d", value.shape, value.dtype.name)
        return OrtValue.ortvalue_from_numpy(value, self.device, 0)

    def _download(self, name: str, value: Any, kind: str = "step") -> np.ndarray:
        """A host copy of a device OrtValue (one counted d2h copy)."""
        out = np.array(value.numpy(), copy=True)
        self._count(kind, name, "d2h", out.shape, out.dtype.name)
        return out

    def empty_lora(self) -> dict[str, np.ndarray]:
        """Stacked adapter tensors with every slot zero (no adapter anywhere)."""
        from tinyllm.adapters import projection_dims

        tensors = {}
        for kind in self.spec.lora_targets:
            d_in, d_out = projection_dims(self.c, kind)
            lead = (self.layers, self.spec.lora_slots)
            tensors[f"lora_A.{kind}"] = np.zeros((*lead, d_in, self.spec.lora_rank), self.dtype)
            tensors[f"lora_B.{kind}"] = np.zeros((*lead, self.spec.lora_rank, d_out), self.dtype)
        return tensors

    def set_lora(self, tensors: dict[str, np.ndarray]) -> None:
        """Bind the stacked adapter tensors (``lora_A.P`` / ``lora_B.P``) for later calls.

        The arrays are bound without copying: writing a slot in place updates the model.
        """
        self.lora = {k: np.ascontiguousarray(v, self.dtype) for k, v in tensors.items()}
        self._bindings.clear()
        if self.device is not None:
            from onnxruntime import OrtValue

            self._lora_dev = {}
            for name, tensor in self.lora.items():
                self._count("setup", name, "h2d", tensor.shape, tensor.dtype.name)
                # Memory of ONNX Runtime's own (on "cpu" too, not a view of the array).
                value = OrtValue.ortvalue_from_shape_and_type(
                    tensor.shape, self.dtype.type, self.device, 0
                )
                value.update_inplace(tensor)
                self._lora_dev[name] = value

    def sync_lora(self) -> None:
        """The bound adapter arrays were written in place: upload them again where they
        live on a device (host sessions read them in place: nothing to do)."""
        if self.device is None:
            return
        for name, tensor in self.lora.items():
            self._count("setup", name, "h2d", tensor.shape, tensor.dtype.name)
            self._lora_dev[name].update_inplace(tensor)

    def read_kv(self, row: int, n: int) -> list[np.ndarray]:
        """Copies of the first ``n`` positions of ``row`` in every KV buffer.

        On a device each whole buffer comes back (ONNX Runtime's Python API copies whole
        OrtValues): right, but costly; see docs/gpu.md."""
        if self.device is not None:
            return [
                self._download(f"kv.{i}", v, "setup")[row, :, :n].copy()
                for i, v in enumerate(self.kv_dev)
            ]
        return [buf[row, :, :n].copy() for buf in self.kv]

    def write_kv(self, row: int, kv: Sequence[np.ndarray]) -> None:
        """Put ``kv`` (from :meth:`read_kv`) at the first positions of ``row``."""
        if self.device is not None:
            for i, (value, part) in enumerate(zip(self.kv_dev, kv, strict=True)):
                whole = self._download(f"kv.{i}", value, "setup")
                whole[row, :, : part.shape[1]] = part
                self._count("setup", f"kv.{i}", "h2d", whole.shape, whole.dtype.name)
                value.update_inplace(whole)
            return
        for buf, part in zip(self.kv, kv, strict=True):
            buf[row, :, : part.shape[1]] = part

    def prefill(
        self, prompts: Sequence[Sequence[int]], lora_index: np.ndarray | None = None
    ) -> np.ndarray:
        """Start one sequence per row ``0..b-1`` from its prompt; last-token logits [b, V]."""
        b = len(prompts)
        if not 0 < b <= self.max_batch:
            raise ConfigError(f"batch of {b} prompts; this engine takes 1 to {self.max_batch}")
        return self.prefill_rows(0, prompts, [0] * b, lora_index)

    def prefill_rows(
        self,
        start: int,
        chunks: Sequence[Sequence[int]],
        past: Sequence[int],
        lora_index: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write prompt tokens into KV rows ``start..start+b-1``.

        Row ``i`` already holds ``past[i]`` tokens; ``chunks[i]`` follow them. Returns the
        logits after each chunk's last token [b, V]. ONNX Runtime's CPU GroupQueryAttention
        continues a prompt after past tokens only for one row, so with the ``ort`` flavour
        ``past`` must be all zero when ``b > 1``.
        """
        logits = self._prefill(start, chunks, past, lora_index, want_logits=True)
        assert logits is not None  # asked for
        return logits

    def prefill_ids(
        self,
        start: int,
        chunks: Sequence[Sequence[int]],
        past: Sequence[int],
        lora_index: np.ndarray | None = None,
    ) -> np.ndarray:
        """As :meth:`prefill_rows`, bringing back only each row's greedy id after its
        chunk ``[b]`` int64 (the logits are not fetched); needs a ``greedy_ids`` engine."""
        self._require_ids()
        self._prefill(start, chunks, past, lora_index, want_logits=False)
        assert self.ids is not None
        return self.ids

    def _prefill(
        self,
        start: int,
        chunks: Sequence[Sequence[int]],
        past: Sequence[int],
        lora_index: np.ndarray | None,
        want_logits: bool,
    ) -> np.ndarray | None:
        b = len(chunks)
        if b < 1 or start < 0 or start + b > self.max_batch:
            raise ConfigError(f"rows {start}..{start + b - 1} are outside 0..{self.max_batch - 1}")
        if self.shared and b > 1 and any(past):
            raise ConfigError("a prompt continues after past tokens only one row at a time")
        lengths = np.array([len(c) for c in chunks], np.int64)
        if int(lengths.min()) < 1:
            raise ConfigError("every prefilled chunk needs at least one token")
        held = np.asarray(past, np.int64) + lengths
        if int(held.max()) > self.spec.max_seq_len:
            raise ConfigError(f"a sequence exceeds the engine's context of {self.spec.max_seq_len}")
        ids = np.full((b, int(lengths.max())), self.pad_id, np.int64)
        for row, chunk in enumerate(chunks):
            ids[row, : len(chunk)] = chunk
        past_ = np.asarray(past, np.int64)
        return self._step(ids, start, past_, lengths, lora_index, want_logits=want_logits)

    def decode(
        self,
        tokens: Sequence[int],
        lengths: Sequence[int],
        lora_index: np.ndarray | Sequence[int] | None = None,
        start: int = 0,
    ) -> np.ndarray:
        """Feed one token per row ``start..start+b-1``; ``lengths`` are the tokens each
        row holds. Returns the next-token logits ``[b, V]``."""
        logits = self._decode(tokens, lengths, lora_index, want_logits=True, start=start)
        assert logits is not None  # asked for
        return logits

    def decode_ids(
        self,
        tokens: Sequence[int],
        lengths: Sequence[int],
        lora_index: np.ndarray | Sequence[int] | None = None,
        start: int = 0,
    ) -> np.ndarray:
        """As :meth:`decode`, bringing back only each row's greedy next token ``[b]`` int64
        (the logits are not fetched); needs a ``greedy_ids`` engine."""
        self._require_ids()
        self._decode(tokens, lengths, lora_index, want_logits=False, start=start)
        assert self.ids is not None
        return self.ids

    def _decode(
        self,
        tokens: Sequence[int],
        lengths: Sequence[int],
        lora_index: np.ndarray | Sequence[int] | None,
        want_logits: bool,
        start: int = 0,
    ) -> np.ndarray | None:
        b = len(tokens)
        if b < 1 or start < 0 or start + b > self.max_batch:
            raise ConfigError(f"rows {start}..{start + b - 1} are outside 0..{self.max_batch - 1}")
        held = np.asarray(lengths, np.int64)
        if int(held.max()) >= self.spec.max_seq_len:
            raise ConfigError(f"a sequence reached the engine's context of {self.spec.max_seq_len}")
        if self.shared and self.device is None:
            return self._decode_bound(tokens, held, lora_index, start, want_logits)
        ids = np.asarray(tokens, np.int64)[:, None]
        lora = None if lora_index is None else np.asarray(lora_index, np.int64)
        ones = np.ones(b, np.int64)
        return self._step(ids, start, held, ones, lora, want_logits=want_logits)

    def _decode_bound(
        self,
        tokens: Sequence[int],
        held: np.ndarray,
        lora_index: np.ndarray | Sequence[int] | None,
        start: int,
        want_logits: bool,
    ) -> np.ndarray | None:
        """A decode run of an ``ort`` host session: the step's inputs are written into
        arrays bound once to the run's IO binding (no per-step arrays or rebinding)."""
        b = len(tokens)
        self.ids = None
        io, feeds = self._decode_binding(b, start, want_logits)
        feeds["input_ids"][:, 0] = tokens
        feeds["seqlens_k"][:] = held  # each row's length after this token, minus one
        feeds["total_sequence_length"][...] = int(held.max()) + 1
        if "lora_index" in feeds:
            feeds["lora_index"][:] = 0 if lora_index is None else lora_index
        self.sess.run_with_iobinding(io)
        if self.greedy_ids:
            self.ids = self.ids_buf[start : start + b]
        return self.logits_buf[start : start + b] if want_logits else None

    def _require_ids(self) -> None:
        if not self.greedy_ids:
            raise ConfigError(
                "this engine has no greedy_ids output; re-export it with greedy_ids=True "
                "(tinyllm export --greedy-ids), or read the logits"
            )

    def verify(self, row: int, tokens: Sequence[int], past: int, slot: int = 0) -> np.ndarray:
        """Feed ``tokens`` after the ``past`` tokens ``row`` holds, in one run; the logits
        after each of them ``[len(tokens), V]`` (a speculative decoder's verify step).

        The row's KV then holds all of them; a caller that accepts fewer simply counts
        fewer (later tokens overwrite the rest, attention reads only a row's length).
        """
        n = len(tokens)
        if not self.verifies:
            raise ConfigError(
                "this engine returns one position's logits per row; re-export it to verify "
                "several tokens in one step"
            )
        if n < 1 or not 0 <= row < self.max_batch:
            raise ConfigError(f"verify needs tokens and a row in 0..{self.max_batch - 1}")
        if past + n > self.spec.max_seq_len:
            raise ConfigError(f"a sequence exceeds the engine's context of {self.spec.max_seq_len}")
        ids = np.asarray(tokens, np.int64)[None, :]
        lora = np.array([slot], np.int64)
        positions = np.arange(n, dtype=np.int64)[None, :]
        logits = self._step(ids, row, np.array([past]), np.array([n]), lora, positions)
        assert logits is not None  # a verify step always brings its logits
        return logits[0]

    def _step(
        self,
        ids: np.ndarray,
        start: int,
        past: np.ndarray,
        lengths: np.ndarray,
        lora_index: np.ndarray | None,
        positions: np.ndarray | None = None,
        want_logits: bool = True,
    ) -> np.ndarray | None:
        """Run ``ids [b, S]`` (right-padded to S) after ``past`` tokens in rows from ``start``;
        the logits after each row's last token ``[b, V]``, or at ``positions [b, P]`` of
        each row ``[b, P, V]``; None when not ``want_logits`` (then :attr:`ids` holds the
        rows' greedy ids)."""
        b = ids.shape[0]
        self.ids = None
        index = lengths - 1 if positions is None else positions
        feeds: dict[str, np.ndarray] = {"input_ids": ids, "logits_index": index}
        if self.spec.lora_slots:
            slots = np.zeros(b, np.int64) if lora_index is None else lora_index
            feeds["lora_index"] = np.asarray(slots, np.int64)
        if not self.shared:
            return self._run_standard(feeds, start, past, lengths, want_logits)
        held = past + lengths
        feeds["seqlens_k"] = (held - 1).astype(np.int32)
        total = np.array(int(past.max()) + ids.shape[1], np.int32)
        width = 0 if positions is None else positions.shape[1]
        if self.device is not None:
            return self._run_device(feeds, total, start, b, width, want_logits)
        feeds["total_sequence_length"] = total
        io = self._binding(b, start, width, want_logits)
        for name, value in feeds.items():
            io.bind_cpu_input(name, value)
        self.sess.run_with_iobinding(io)
        if self.greedy_ids and not width:
            self.ids = self.ids_buf[start : start + b]
        if width:
            return self._verify_logits[width]
        return self.logits_buf[start : start + b] if want_logits else None

    def _run_standard(
        self,
        feeds: dict[str, np.ndarray],
        start: int,
        past: np.ndarray,
        lengths: np.ndarray,
        want_logits: bool = True,
    ) -> np.ndarray | None:
        """One call of the standard graph over rows' KV buffers (see the module docstring);
        asks ONNX Runtime for the logits only when ``want_logits``."""
        b, width = feeds["input_ids"].shape
        p = int(past.max())
        mask = np.zeros((b, p + width), np.int64)
        for row in range(b):
            mask[row, : past[row]] = 1
            mask[row, p : p + lengths[row]] = 1
        positions = past[:, None] + np.arange(width)[None, :]
        feeds["position_ids"] = np.minimum(positions, self.spec.max_seq_len - 1)
        feeds["attention_mask"] = mask
        rows = slice(start, start + b)
        heads = (["logits"] if want_logits else []) + (["greedy_ids"] if self.greedy_ids else [])
        names = list(heads)
        for i in range(self.layers):
            for j, kind in enumerate(("key", "value")):
                feeds[f"past_{kind}.{i}"] = np.ascontiguousarray(self.kv[2 * i + j][rows, :, :p])
                names.append(f"present_{kind}.{i}")
        outputs = self.sess.run(names, {**feeds, **self.lora})
        for buf, present in zip(self.kv, outputs[len(heads) :], strict=True):
            for row in range(b):
                n, at = int(lengths[row]), int(past[row])
                buf[start + row, :, at : at + n] = present[row, :, p : p + n]
        got = dict(zip(heads, outputs, strict=False))
        if self.greedy_ids and got["greedy_ids"].ndim == 1:
            self.ids = self.ids_buf[rows]
            self.ids[:] = got["greedy_ids"]
        if not want_logits:
            return None
        if got["logits"].ndim == 3:  # logits at several positions per row (verify)
            return np.asarray(got["logits"])
        logits = self.logits_buf[rows]
        logits[:] = got["logits"]
        return logits

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
            for i in range(self.layers):
                for j, kind in enumerate(("key", "value")):
                    io.bind_ortvalue_input(f"past_{kind}.{i}", views[2 * i + j])
                    io.bind_ortvalue_output(f"present_{kind}.{i}", views[2 * i + j])
            if width:
                shape = (1, width, self.c.vocab_size)
                out = self._verify_logits.setdefault(width, np.zeros(shape, self.dtype))
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
            if self.spec.lora_slots:
                feeds["lora_index"] = np.zeros(b, np.int64)
            io = self._binding(b, start, 0, logits, key)
            for name, value in feeds.items():
                io.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(value))
            self._decode_feeds[key] = feeds
        return self._bindings[key], self._decode_feeds[key]

    def _run_device(
        self,
        feeds: dict[str, np.ndarray],
        total: np.ndarray,
        start: int,
        b: int,
        width: int,
        want_logits: bool = True,
    ) -> np.ndarray | None:
        """One step of a device session: upload the per-row inputs, run on the bound device
        buffers, bring back the logits of rows ``start..start+b-1`` only, or (not
        ``want_logits``) only their greedy ids: the logits stay on the device."""
        self.copies = []
        io = self._device_binding(b, start, width)
        for name, value in feeds.items():
            io.bind_ortvalue_input(name, self._upload(name, value))
        # A CPU input of GroupQueryAttention on every provider: read on the host, no copy.
        io.bind_cpu_input("total_sequence_length", total)
        self.sess.run_with_iobinding(io)
        if self.greedy_ids and not width:  # [b] int64: small beside the logits
            self.ids = self.ids_buf[start : start + b]
            self.ids[:] = self._download("greedy_ids", self._ids_dev[start, b])
        if not want_logits:
            return None
        logits = self._download("logits", self._out_dev[start, b, width])
        if width:
            return logits
        out = self.logits_buf[start : start + b]
        out[:] = logits
        return out

    def _device_binding(self, b: int, start: int, width: int) -> Any:
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
                    ptr = self.kv_dev[2 * i + j].data_ptr() + offset
                    args = (self.device, 0, self.dtype.type, shape, ptr)
                    io.bind_input(f"past_{kind}.{i}", *args)
                    io.bind_output(f"present_{kind}.{i}", *args)
            rows = (1, width) if width else (b,)
            logits = OrtValue.ortvalue_from_shape_and_type(
                (*rows, self.c.vocab_size), self.dtype.type, self.device, 0
            )
            self._out_dev[key] = logits
            io.bind_ortvalue_output("logits", logits)
            if self.greedy_ids and not width:  # the same binding serves both kinds of step
                ids = OrtValue.ortvalue_from_shape_and_type((b,), np.int64, self.device, 0)
                self._ids_dev[start, b] = ids
                io.bind_ortvalue_output("greedy_ids", ids)
            for name, value in self._lora_dev.items():  # bound once, uploaded by set_lora
                io.bind_ortvalue_input(name, value)
            self._bindings[key] = io
        return self._bindings[key]
