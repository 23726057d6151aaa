"""Where a decoder session's arrays live, and what crosses host <-> device per step.

Pure Python on plain data (no onnxruntime, no GPU): given an engine's info, the model
config, the batch and context the session is sized for, and the device, :func:`plan`
returns every persistent array (KV buffers, adapter stacks, logits) with its shape,
dtype, bytes and residence, and the copies one decode step makes. The CUDA session
binds exactly what the plan puts on the device; tests assert the plan itself.

- ``cpu``: everything is host memory the CPU provider reads in place: no copies.
- ``cuda`` with the ``ort`` flavour: KV buffers, adapter stacks and the logits live on
  the GPU as OrtValues bound with IO binding (the KV written in place by
  GroupQueryAttention). Per decode step the small per-row inputs go up (input ids,
  ``logits_index``, ``seqlens_k``, ``lora_index``; ``total_sequence_length`` is a CPU
  input of the CUDA GroupQueryAttention kernel, so never copied) and the logits come
  back: every row's logits ``[b, V]``. An engine exported with ``greedy_ids`` also
  brings back each row's argmax ``[b]`` int64, and a step whose rows all decode greedily
  with no constraint (``greedy=True``) brings back only those ids: the logits stay on
  the GPU.
- ``cuda`` with the ``standard`` flavour: its graph grows the KV by concatenation, so
  the past KV of every layer goes up and the present comes back each step; the plan
  says so (use ``onnx-cuda`` for device-resident KV).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from tinyllm.adapters import projection_dims
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError
from tinyllm.runtime.engineinfo import EngineInfo

Where = Literal["host", "device"]
ITEMSIZE = {"float32": 4, "float16": 2, "int64": 8, "int32": 4}
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Buffer:
    """One array the session keeps for its lifetime."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    where: Where

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return math.prod(self.shape) * ITEMSIZE[self.dtype]


@dataclass(frozen=True)
class Copy:
    """One host -> device (``h2d``) or device -> host (``d2h``) transfer."""

    name: str
    direction: Literal["h2d", "d2h"]
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        """Bytes moved."""
        return math.prod(self.shape) * ITEMSIZE[self.dtype]


@dataclass(frozen=True)
class DevicePlan:
    """The arrays of a session and the copies of one decode step of ``batch`` rows."""

    device: str
    flavour: str
    max_batch: int
    max_seq: int
    buffers: list[Buffer]
    decode_copies: list[Copy]
    setup_copies: list[Copy] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def resident(self, where: Where) -> list[str]:
        """Names of the buffers that live ``where``."""
        return [b.name for b in self.buffers if b.where == where]

    def bytes_on(self, where: Where) -> int:
        """Bytes of the buffers that live ``where``."""
        return sum(b.nbytes for b in self.buffers if b.where == where)

    def copies_per_step(self, direction: Literal["h2d", "d2h"]) -> int:
        """Number of transfers one decode step makes in ``direction``."""
        return sum(1 for c in self.decode_copies if c.direction == direction)

    def bytes_per_step(self, direction: Literal["h2d", "d2h"]) -> int:
        """Bytes one decode step moves in ``direction``."""
        return sum(c.nbytes for c in self.decode_copies if c.direction == direction)


def kv_buffers(config: ModelConfig, dtype: str, batch: int, seq: int, where: Where) -> list[Buffer]:
    """The per-layer key and value buffers ``[batch, KV, seq, H]``."""
    shape = (batch, config.num_key_value_heads, seq, config.head_dim)
    return [
        Buffer(f"kv.{kind}.{i}", shape, dtype, where)
        for i in range(config.num_hidden_layers)
        for kind in ("key", "value")
    ]


def lora_buffers(config: ModelConfig, info: EngineInfo, where: Where) -> list[Buffer]:
    """The stacked adapters ``lora_A.P [L, slots, d_in, r]`` and ``lora_B.P [L, slots, r,
    d_out]`` of every adapted projection kind (none without LoRA slots)."""
    out = []
    lead = (config.num_hidden_layers, info.lora_slots)
    for kind in info.lora_targets if info.lora_slots else ():
        d_in, d_out = projection_dims(config, kind)
        out.append(Buffer(f"lora_A.{kind}", (*lead, d_in, info.lora_rank), info.float_dtype, where))
        out.append(
            Buffer(f"lora_B.{kind}", (*lead, info.lora_rank, d_out), info.float_dtype, where)
        )
    return out


def step_inputs(info: EngineInfo, batch: int, held: int) -> list[Copy]:
    """The per-row inputs of one decode step that go host -> device (ort or standard)."""
    copies = [
        Copy("input_ids", "h2d", (batch, 1), "int64"),
        Copy("logits_index", "h2d", (batch,), "int64"),
    ]
    if info.flavour == "ort":
        copies.append(Copy("seqlens_k", "h2d", (batch,), "int32"))
    else:
        copies.append(Copy("position_ids", "h2d", (batch, 1), "int64"))
        copies.append(Copy("attention_mask", "h2d", (batch, held + 1), "int64"))
    if info.lora_slots:
        copies.append(Copy("lora_index", "h2d", (batch,), "int64"))
    return copies


def step_outputs(
    info: EngineInfo, config: ModelConfig, batch: int, greedy: bool, where: Where
) -> tuple[list[Buffer], list[Copy]]:
    """The output buffers of a step (logits, and greedy ids where the engine has them) and
    the copies that bring them back: the ids alone in a ``greedy`` step."""
    buffers = [Buffer("logits", (batch, config.vocab_size), info.float_dtype, where)]
    if info.greedy_ids:
        buffers.append(Buffer("greedy_ids", (batch,), "int64", where))
    copies = [Copy(b.name, "d2h", b.shape, b.dtype) for b in buffers]
    return buffers, copies[1:] if greedy else copies


def plan(
    info: EngineInfo,
    config: ModelConfig,
    max_batch: int,
    max_seq: int,
    device: str,
    *,
    greedy: bool = False,
) -> DevicePlan:
    """Plan a session of ``max_batch`` rows and ``max_seq`` positions on ``device``.

    The decode step planned is the largest: ``max_batch`` rows, each holding
    ``max_seq - 1`` tokens; ``greedy``: rows that all decode greedily with no constraint,
    on an engine exported with ``greedy_ids`` (their ids come back, not the logits).
    """
    check_shape(info, max_batch, max_seq, device)
    if greedy and not info.greedy_ids:
        raise ConfigError("a greedy step reads the greedy_ids output: this engine has none")
    dtype = info.float_dtype
    if device == "cpu":
        outs, _ = step_outputs(info, config, max_batch, greedy, "host")
        buffers = [
            *kv_buffers(config, dtype, max_batch, max_seq, "host"),
            *lora_buffers(config, info, "host"),
            *outs,
        ]
        note = "the CPU provider reads and writes host memory in place: no copies"
        return DevicePlan(device, info.flavour, max_batch, max_seq, buffers, [], [], [note])
    inputs = step_inputs(info, max_batch, max_seq - 1)
    loras = lora_buffers(config, info, "device")
    uploads = [Copy(b.name, "h2d", b.shape, b.dtype) for b in loras]
    if info.flavour == "ort":
        outs, back = step_outputs(info, config, max_batch, greedy, "device")
        buffers = [*kv_buffers(config, dtype, max_batch, max_seq, "device"), *loras, *outs]
        notes = [
            "total_sequence_length is a CPU input of CUDA GroupQueryAttention: not copied",
            "adapter stacks are uploaded once per set_lora, not per step",
        ]
        return DevicePlan(
            device, "ort", max_batch, max_seq, buffers, [*inputs, *back], uploads, notes
        )
    kv = kv_buffers(config, dtype, max_batch, max_seq, "host")
    past = (max_batch, config.num_key_value_heads, max_seq - 1, config.head_dim)
    present = (max_batch, config.num_key_value_heads, max_seq, config.head_dim)
    kv_copies = [Copy(f"past.{b.name}", "h2d", past, dtype) for b in kv]
    kv_copies += [Copy(f"present.{b.name}", "d2h", present, dtype) for b in kv]
    outs, back = step_outputs(info, config, max_batch, greedy, "host")
    buffers = [*kv, *loras, *outs]
    notes = [
        "the standard graph grows its KV by concatenation: every layer's KV crosses "
        "each step; export onnx-cuda for device-resident KV"
    ]
    return DevicePlan(
        device,
        "standard",
        max_batch,
        max_seq,
        buffers,
        [*inputs, *kv_copies, *back],
        uploads,
        notes,
    )


def check_shape(info: EngineInfo, max_batch: int, max_seq: int, device: str) -> None:
    """Reject a session shape or device no plan exists for."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if max_batch < 1:
        raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
    if not 1 <= max_seq <= info.max_seq_len:
        raise ConfigError(
            f"max_seq must be 1 to the engine's context of {info.max_seq_len}, got {max_seq}"
        )
    if info.float_dtype not in ITEMSIZE:
        raise ConfigError(f"engine float dtype {info.float_dtype!r} is not float32 or float16")


def names(items: Sequence[Buffer | Copy]) -> list[str]:
    """The names of buffers or copies, in order."""
    return [item.name for item in items]
