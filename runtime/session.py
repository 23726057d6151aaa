"""One exported decoder in an ONNX Runtime session, with its KV cache.

Both flavours keep one KV buffer per layer ``[max_batch, KV, max_seq, H]``; a row's
tokens sit at positions ``0..held-1`` of its row. ``prefill_rows`` writes prompt tokens
into chosen rows after the tokens they already hold, ``decode`` advances a run of rows
by one token; each returns the next-token logits ``[b, V]``. This module checks a step's
rows and lengths, builds its inputs and keeps its results; how a step reaches the
arrays is one module per place they live:

- :mod:`~tinyllm.runtime.hostbindings`: the ``ort`` flavour in host memory, KV bound as
  both past and present (no per-step copies); a decode run's inputs bound once per run
  shape. The buffers cost only the pages their tokens fill (:mod:`~tinyllm.runtime.kvbuffers`).
- :mod:`~tinyllm.runtime.devicebuffers`: the ``ort`` flavour with ``device`` set
  (``"cuda"``; ``"cpu"`` runs the same code so tests can check it): KV, adapter stacks
  and logits as OrtValues on the device, as :mod:`~tinyllm.runtime.deviceplan` plans,
  every transfer recorded (:attr:`DecoderSession.copies`) for tests to compare.
- :mod:`~tinyllm.runtime.standardstep`: the ``standard`` flavour, whose graph
  concatenates the KV (host arrays always: it crosses anyway).

An engine exported with ``greedy_ids`` also outputs each row's argmax. Every step but a
verify step then leaves those ids in :attr:`DecoderSession.ids` (a view, valid until the
next step, as the logits are), and :meth:`DecoderSession.prefill_ids` /
:meth:`DecoderSession.decode_ids` run a step that brings back the ids alone: a device
session leaves the logits on the device (``[b]`` int64 come back instead of ``[b, V]``),
a host session does not bind them, the ``standard`` flavour does not ask for them.
The InferenceSession comes from :func:`tinyllm.runtime.ortsession.make_session`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError
from tinyllm.runtime.devicebuffers import DeviceBuffers
from tinyllm.runtime.hostbindings import HostBindings
from tinyllm.runtime.kvbuffers import lazy_zeros
from tinyllm.runtime.ortsession import check_device
from tinyllm.runtime.standardstep import run_standard

if TYPE_CHECKING:
    from tinyllm.runtime.deviceplan import Copy


@dataclass(frozen=True)
class SessionSpec:
    """What the session needs to know about the exported graph (from engine.json)."""

    flavour: str
    float_dtype: str
    max_seq_len: int
    lora_slots: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ()


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
        if device is not None:
            check_device(device)
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
        # Engines exported with greedy_ids output each row's argmax (builder.py).
        self.greedy_ids = any(o.name == "greedy_ids" for o in session.get_outputs())
        self.kv: list[np.ndarray] = []
        self._device: DeviceBuffers | None = None
        if self.device is None:
            self.kv = [lazy_zeros(kv_shape, self.dtype) for _ in range(2 * self.layers)]
        else:
            dims = (kv_shape, self.layers, self.dtype, config.vocab_size)
            self._device = DeviceBuffers(session, self.device, *dims, greedy_ids=self.greedy_ids)
        self.logits_buf = np.zeros((max_batch, config.vocab_size), self.dtype)
        self.ids_buf = np.zeros(max_batch, np.int64)
        self.ids: np.ndarray | None = None  # the greedy ids of the last step's rows
        self._host: HostBindings | None = None
        if self.shared and self.device is None:
            buffers = (self.kv, self.logits_buf, self.ids_buf)
            self._host = HostBindings(
                session, *buffers, greedy_ids=self.greedy_ids, lora_slots=spec.lora_slots
            )
        self.lora: dict[str, np.ndarray] = {}
        self.set_lora(self.empty_lora())
        index = {i.name: i for i in session.get_inputs()}.get("logits_index")
        # Engines exported before the verify step declare logits_index as [batch] only.
        self.verifies = index is not None and not (
            isinstance(index.shape, list) and len(index.shape) == 1
        )

    def use_session(self, session: Any) -> None:
        """Run on another InferenceSession of the same graph (a profiled one), from the
        next step on."""
        self.sess = session
        if self._host is not None:
            self._host.rebind(session, self.lora)
        if self._device is not None:
            self._device.rebind(session)

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV buffers."""
        return 2 * self.layers * int(np.prod(self.kv_shape)) * self.dtype.itemsize

    @property
    def kv_dev(self) -> list[Any]:
        """The KV buffers as device OrtValues (device sessions; else empty)."""
        return [] if self._device is None else self._device.kv

    @property
    def copies(self) -> list[Copy]:
        """The transfers of the last step (device sessions; else empty)."""
        return [] if self._device is None else self._device.copies

    @property
    def setup_copies(self) -> list[Copy]:
        """The transfers outside steps: uploads, KV rows (device sessions; else empty)."""
        return [] if self._device is None else self._device.setup_copies

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
        if self._host is not None:
            self._host.rebind(self.sess, self.lora)
        if self._device is not None:
            self._device.set_lora(self.lora)

    def sync_lora(self) -> None:
        """The bound adapter arrays were written in place: upload them again where they
        live on a device (host sessions read them in place: nothing to do)."""
        if self._device is not None:
            self._device.sync_lora(self.lora)

    def read_kv(self, row: int, n: int) -> list[np.ndarray]:
        """Copies of the first ``n`` positions of ``row`` in every KV buffer.

        On a device each whole buffer comes back (ONNX Runtime's Python API copies whole
        OrtValues): right, but costly; see docs/gpu.md."""
        if self._device is not None:
            return self._device.read_kv(row, n)
        return [buf[row, :, :n].copy() for buf in self.kv]

    def write_kv(self, row: int, kv: Sequence[np.ndarray]) -> None:
        """Put ``kv`` (from :meth:`read_kv`) at the first positions of ``row``."""
        if self._device is not None:
            self._device.write_kv(row, kv)
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
        if self._host is not None:  # inputs written into arrays bound once per run
            self.ids = None
            self._host.decode(tokens, held, lora_index, start, want_logits)
            if self.greedy_ids:
                self.ids = self.ids_buf[start : start + b]
            return self.logits_buf[start : start + b] if want_logits else None
        ids = np.asarray(tokens, np.int64)[:, None]
        lora = None if lora_index is None else np.asarray(lora_index, np.int64)
        ones = np.ones(b, np.int64)
        return self._step(ids, start, held, ones, lora, want_logits=want_logits)

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
        if self._device is not None:
            return self._run_device(feeds, total, start, b, width, want_logits)
        assert self._host is not None  # an ort session in host memory
        feeds["total_sequence_length"] = total
        verified = self._host.run(feeds, start, b, width, want_logits)
        if self.greedy_ids and not width:
            self.ids = self.ids_buf[start : start + b]
        if width:
            return verified
        return self.logits_buf[start : start + b] if want_logits else None

    def _run_standard(
        self,
        feeds: dict[str, np.ndarray],
        start: int,
        past: np.ndarray,
        lengths: np.ndarray,
        want_logits: bool = True,
    ) -> np.ndarray | None:
        """One call of the standard graph over rows' KV buffers (standardstep.py); asks
        ONNX Runtime for the logits only when ``want_logits``."""
        rows = slice(start, start + feeds["input_ids"].shape[0])
        heads = (["logits"] if want_logits else []) + (["greedy_ids"] if self.greedy_ids else [])
        got = run_standard(
            self.sess, feeds, self.kv, self.lora, start, past, lengths, self.spec.max_seq_len, heads
        )
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

    def _run_device(
        self,
        feeds: dict[str, np.ndarray],
        total: np.ndarray,
        start: int,
        b: int,
        width: int,
        want_logits: bool = True,
    ) -> np.ndarray | None:
        """One step of a device session (devicebuffers.py): only the rows' logits come
        back, or (not ``want_logits``) only their greedy ids."""
        assert self._device is not None  # a device session
        ids, logits = self._device.run(feeds, total, start, b, width, want_logits)
        if ids is not None:
            self.ids = self.ids_buf[start : start + b]
            self.ids[:] = ids
        if logits is None or width:
            return logits
        out = self.logits_buf[start : start + b]
        out[:] = logits
        return out
