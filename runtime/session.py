"""One exported decoder in an ONNX Runtime session, with its KV cache.

``prefill`` starts sequences in batch rows ``0..b-1`` (prompts right-padded to the longest),
``decode`` advances every row by one token; each returns the next-token logits ``[b, V]``.
The ``ort`` flavour keeps one KV buffer per layer ``[max_batch, KV, max_seq, H]`` that is
bound as both past and present (IO binding, no per-step copies; GroupQueryAttention
writes each row's new key/value at that row's own position). The ``standard`` flavour
grows past/present by concatenation, with an attention mask and position ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError, TinyLLMError

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


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def make_session(model: Path, device: str, threads: int | None) -> Any:
    """An InferenceSession on ``device`` ("cpu" or "cuda"); a missing provider is an error."""
    import onnxruntime as ort

    if device not in PROVIDERS:
        raise ConfigError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
    if PROVIDERS[device] not in ort.get_available_providers():
        raise TinyLLMError(
            f"device={device!r} needs ONNX Runtime's {PROVIDERS[device]}, which this install "
            f"lacks (available: {', '.join(ort.get_available_providers())}); install "
            "'tinyllm[gpu]' on a CUDA machine, or use device='cpu'"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = [PROVIDERS[device]] + (["CPUExecutionProvider"] if device != "cpu" else [])
    try:
        return ort.InferenceSession(str(model), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise TinyLLMError(f"{model}: ONNX Runtime cannot load this engine ({e})") from e


class DecoderSession:
    """Runs prefill and decode steps of one exported decoder for up to ``max_batch`` rows."""

    def __init__(
        self, session: Any, config: ModelConfig, spec: SessionSpec, max_batch: int, pad_id: int
    ) -> None:
        self.sess = session
        self.c = config
        self.spec = spec
        self.max_batch = max_batch
        self.pad_id = pad_id
        self.dtype = np.dtype(spec.float_dtype)
        self.layers = config.num_hidden_layers
        kv_shape = (max_batch, config.num_key_value_heads, spec.max_seq_len, config.head_dim)
        self.shared = spec.flavour == "ort"
        if self.shared:
            self.kv = [np.zeros(kv_shape, self.dtype) for _ in range(2 * self.layers)]
            self.logits_buf = np.zeros((max_batch, config.vocab_size), self.dtype)
            self._views: dict[tuple[int, int], list[Any]] = {}
            self._bindings: dict[tuple[int, int], Any] = {}
        self.past: list[np.ndarray] = []
        self.mask = np.zeros((0, 0), np.int64)
        self.lora = self.empty_lora()

    def empty_lora(self) -> dict[str, np.ndarray]:
        """Stacked adapter tensors with every slot zero (no adapter anywhere)."""
        from tinyllm.runtime.builder import lora_dims

        tensors = {}
        for kind in self.spec.lora_targets:
            d_in, d_out = lora_dims(self.c, kind)
            lead = (self.layers, self.spec.lora_slots)
            tensors[f"lora_A.{kind}"] = np.zeros((*lead, d_in, self.spec.lora_rank), self.dtype)
            tensors[f"lora_B.{kind}"] = np.zeros((*lead, self.spec.lora_rank, d_out), self.dtype)
        return tensors

    def set_lora(self, tensors: dict[str, np.ndarray]) -> None:
        """Bind the stacked adapter tensors (``lora_A.P`` / ``lora_B.P``) for later calls.

        The arrays are bound without copying: writing a slot in place updates the model.
        """
        self.lora = {k: np.ascontiguousarray(v, self.dtype) for k, v in tensors.items()}
        if self.shared:
            self._bindings.clear()

    def _bound(self, b: int, start: int = 0) -> list[Any]:
        """OrtValues over rows [start, start + b) of every KV buffer and the logits buffer."""
        if (start, b) not in self._views:
            from onnxruntime import OrtValue

            arrays = [*self.kv, self.logits_buf]
            rows = slice(start, start + b)
            self._views[start, b] = [OrtValue.ortvalue_from_numpy(a[rows]) for a in arrays]
        return self._views[start, b]

    def _run(self, feeds: dict[str, np.ndarray], b: int, start: int = 0) -> np.ndarray:
        if self.spec.lora_slots:
            feeds.setdefault("lora_index", np.zeros(b, np.int64))
        else:  # an engine without LoRA inputs: every row is the base model anyway
            feeds.pop("lora_index", None)
        if not self.shared:
            feeds = {**feeds, **self.lora}
            names = ["logits"] + [
                f"present_{k}.{i}" for i in range(self.layers) for k in ("key", "value")
            ]
            outputs = self.sess.run(names, {**feeds, **self._past_feeds()})
            self.past = outputs[1:]
            return np.asarray(outputs[0])
        io = self._binding(b, start)
        for name, value in feeds.items():
            io.bind_cpu_input(name, value)
        self.sess.run_with_iobinding(io)
        return self.logits_buf[start : start + b]

    def _binding(self, b: int, start: int = 0) -> Any:
        """An IO binding for rows [start, start + b), KV buffers and logits bound (made once)."""
        if (start, b) not in self._bindings:
            from onnxruntime import OrtValue

            io = self.sess.io_binding()
            views = self._bound(b, start)
            for i in range(self.layers):
                for j, kind in enumerate(("key", "value")):
                    io.bind_ortvalue_input(f"past_{kind}.{i}", views[2 * i + j])
                    io.bind_ortvalue_output(f"present_{kind}.{i}", views[2 * i + j])
            io.bind_ortvalue_output("logits", views[-1])
            for name, tensor in self.lora.items():  # bound once, not copied per step
                io.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(tensor))
            self._bindings[start, b] = io
        return self._bindings[start, b]

    def _past_feeds(self) -> dict[str, np.ndarray]:
        return {
            f"past_{k}.{i}": self.past[2 * i + j]
            for i in range(self.layers)
            for j, k in enumerate(("key", "value"))
        }

    def prefill(
        self, prompts: Sequence[Sequence[int]], lora_index: np.ndarray | None = None
    ) -> np.ndarray:
        """Start one sequence per row from its prompt; returns last-token logits [b, V]."""
        b = len(prompts)
        if not 0 < b <= self.max_batch:
            raise ConfigError(f"batch of {b} prompts; this engine takes 1 to {self.max_batch}")
        lengths = np.array([len(p) for p in prompts], np.int64)
        width = int(lengths.max())
        ids = np.full((b, width), self.pad_id, np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt)] = prompt
        feeds: dict[str, np.ndarray] = {"input_ids": ids, "logits_index": lengths - 1}
        if lora_index is not None:
            feeds["lora_index"] = lora_index.astype(np.int64)
        if self.shared:
            feeds["seqlens_k"] = (lengths - 1).astype(np.int32)
            feeds["total_sequence_length"] = np.array(width, np.int32)
        else:
            shape = (b, self.c.num_key_value_heads, 0, self.c.head_dim)
            self.past = [np.zeros(shape, self.dtype) for _ in range(2 * self.layers)]
            self.mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
            feeds["position_ids"] = np.broadcast_to(np.arange(width), (b, width)).copy()
            feeds["attention_mask"] = self.mask
        return self._run(feeds, b)

    def decode(
        self, tokens: Sequence[int], lengths: Sequence[int], lora_index: np.ndarray | None = None
    ) -> np.ndarray:
        """Feed one token per row; ``lengths`` are the tokens each row already holds."""
        b = len(tokens)
        held = np.asarray(lengths, np.int64)
        if int(held.max()) >= self.spec.max_seq_len:
            raise ConfigError(f"a sequence reached the engine's context of {self.spec.max_seq_len}")
        feeds: dict[str, np.ndarray] = {
            "input_ids": np.asarray(tokens, np.int64)[:, None],
            "logits_index": np.zeros(b, np.int64),
        }
        if lora_index is not None:
            feeds["lora_index"] = lora_index.astype(np.int64)
        if self.shared:
            feeds["seqlens_k"] = held.astype(np.int32)
            feeds["total_sequence_length"] = np.array(int(held.max()) + 1, np.int32)
        else:
            self.mask = np.concatenate([self.mask, np.ones((b, 1), np.int64)], axis=1)
            feeds["position_ids"] = held[:, None]
            feeds["attention_mask"] = self.mask
        return self._run(feeds, b)

    def prefill_rows(
        self,
        start: int,
        chunks: Sequence[Sequence[int]],
        past: Sequence[int],
        lora_index: np.ndarray | None = None,
    ) -> np.ndarray:
        """Write prompt tokens into KV rows ``start..start+b-1`` (``ort`` flavour only).

        Row ``i`` already holds ``past[i]`` tokens; ``chunks[i]`` follow them. Returns the
        logits after each chunk's last token [b, V]. ONNX Runtime's CPU GroupQueryAttention
        continues a prompt after past tokens only for one row, so ``past`` must be all zero
        when ``b > 1``.
        """
        b = len(chunks)
        if not self.shared:
            raise ConfigError("prefill into chosen KV rows needs the ort flavour (onnx-cpu/cuda)")
        if b < 1 or start < 0 or start + b > self.max_batch:
            raise ConfigError(f"rows {start}..{start + b - 1} are outside 0..{self.max_batch - 1}")
        if b > 1 and any(past):
            raise ConfigError("a prompt continues after past tokens only one row at a time")
        lengths = np.array([len(c) for c in chunks], np.int64)
        held = np.asarray(past, np.int64) + lengths
        if int(held.max()) > self.spec.max_seq_len:
            raise ConfigError(f"a sequence exceeds the engine's context of {self.spec.max_seq_len}")
        width = int(lengths.max())
        ids = np.full((b, width), self.pad_id, np.int64)
        for row, chunk in enumerate(chunks):
            ids[row, : len(chunk)] = chunk
        feeds: dict[str, np.ndarray] = {
            "input_ids": ids,
            "logits_index": lengths - 1,
            "seqlens_k": (held - 1).astype(np.int32),
            "total_sequence_length": np.array(int(past[0]) + width, np.int32),
        }
        if lora_index is not None:
            feeds["lora_index"] = lora_index.astype(np.int64)
        return self._run(feeds, b, start)
