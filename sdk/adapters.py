"""LoRA adapters kept beside the base weights: one ``adapters/TASK.safetensors`` per task.

The file holds peft's tensors without peft's wrapper prefix, keyed by the base weight
they adapt: ``model.layers.{i}.self_attn.q_proj.lora_A.weight [r, d_in]`` and
``...lora_B.weight [d_out, r]``. The delta of a projection is ``scaling * B @ A`` with
``scaling = alpha / rank`` (peft's default, non-rslora). Every stage shares this contract:
distillation writes adapters, compression merges them or quantizes around them, the
runtime stacks them into slots. Pure numpy, so the runtime needs no torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.config import PROJECTIONS as PROJECTIONS  # defined with the model config
from tinyllm.config import ModelConfig
from tinyllm.errors import BundleError, ConfigError
from tinyllm.manifest import AdapterEntry

PEFT_PREFIX = "base_model.model."


def module_name(layer: int, kind: str) -> str:
    """HF module name of projection ``kind`` in ``layer`` (e.g. model.layers.0.mlp.up_proj)."""
    group = "mlp" if kind in ("gate_proj", "up_proj", "down_proj") else "self_attn"
    return f"model.layers.{layer}.{group}.{kind}"


def projection_dims(c: ModelConfig, kind: str) -> tuple[int, int]:
    """(d_in, d_out) of a projection kind."""
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    dims = {
        "q_proj": (c.hidden_size, q),
        "k_proj": (c.hidden_size, kv),
        "v_proj": (c.hidden_size, kv),
        "o_proj": (q, c.hidden_size),
        "gate_proj": (c.hidden_size, c.intermediate_size),
        "up_proj": (c.hidden_size, c.intermediate_size),
        "down_proj": (c.intermediate_size, c.hidden_size),
    }
    if kind not in dims:
        raise ConfigError(f"unknown projection {kind!r}; expected one of {PROJECTIONS}")
    return dims[kind]


def adapter_shapes(c: ModelConfig, rank: int, targets: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Every tensor name an adapter of this rank and these targets must hold, with shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(c.num_hidden_layers):
        for kind in targets:
            d_in, d_out = projection_dims(c, kind)
            base = module_name(layer, kind)
            shapes[f"{base}.lora_A.weight"] = (rank, d_in)
            shapes[f"{base}.lora_B.weight"] = (d_out, rank)
    return shapes


@dataclass(frozen=True)
class LoraAdapter:
    """One task's LoRA adapter. ``tensors`` map names of :func:`adapter_shapes` to arrays."""

    rank: int
    alpha: float
    targets: tuple[str, ...]
    tensors: Mapping[str, np.ndarray]

    @property
    def scaling(self) -> float:
        """Multiplier of ``B @ A`` (alpha / rank)."""
        return self.alpha / self.rank

    def a(self, layer: int, kind: str) -> np.ndarray:
        """lora_A of one projection: [r, d_in]."""
        return self.tensors[f"{module_name(layer, kind)}.lora_A.weight"]

    def b(self, layer: int, kind: str) -> np.ndarray:
        """lora_B of one projection: [d_out, r]."""
        return self.tensors[f"{module_name(layer, kind)}.lora_B.weight"]

    def delta(self, layer: int, kind: str) -> np.ndarray:
        """The weight delta ``scaling * B @ A``: [d_out, d_in] (HF weight layout), float32."""
        a = self.a(layer, kind).astype(np.float32)
        b = self.b(layer, kind).astype(np.float32)
        return (b @ a) * np.float32(self.scaling)

    def entry(self, file: str) -> AdapterEntry:
        """The manifest entry describing this adapter stored at ``file``."""
        return AdapterEntry(
            file=file, rank=self.rank, alpha=self.alpha, target_modules=list(self.targets)
        )

    def check(self, c: ModelConfig, where: str) -> None:
        """Raise BundleError unless the tensors are exactly those the config and rank need."""
        check_adapter_shapes(
            c,
            self.rank,
            self.targets,
            {k: tuple(v.shape) for k, v in self.tensors.items()},
            where,
        )


def check_adapter_shapes(
    c: ModelConfig,
    rank: int,
    targets: Sequence[str],
    shapes: Mapping[str, tuple[int, ...]],
    where: str,
) -> None:
    """Compare an adapter's tensor shapes with what the model config and rank need."""
    if rank < 1:
        raise BundleError(f"{where}: adapter rank must be >= 1, got {rank}")
    bad = [t for t in targets if t not in PROJECTIONS]
    if bad:
        raise BundleError(f"{where}: unknown adapter target {bad[0]!r}; use {PROJECTIONS}")
    expected = adapter_shapes(c, rank, targets)
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise BundleError(f"{where}: adapter tensor {missing[0]!r} is missing")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise BundleError(f"{where}: unexpected adapter tensor {extra[0]!r}")
    for name, shape in expected.items():
        if tuple(shapes[name]) != shape:
            raise BundleError(
                f"{where}: adapter tensor {name!r} has shape {list(shapes[name])}, rank "
                f"{rank} on this model needs {list(shape)} (adapter rank mismatch?)"
            )


def from_peft_state_dict(
    state: Mapping[str, Any], rank: int, alpha: float, targets: Sequence[str]
) -> LoraAdapter:
    """Build an adapter from ``peft.get_peft_model_state_dict`` output (torch or numpy).

    The tensors are copies: peft's state dict aliases the live parameters, so a snapshot
    taken mid-training (the curriculum's best step) must not follow later updates.
    """
    tensors: dict[str, np.ndarray] = {}
    for key, value in state.items():
        name = key.removeprefix(PEFT_PREFIX)
        array = value.detach().float().cpu().numpy() if hasattr(value, "detach") else value
        tensors[name] = np.array(array, dtype=np.float32, copy=True)
    return LoraAdapter(rank=rank, alpha=float(alpha), targets=tuple(targets), tensors=tensors)


def to_peft_state_dict(adapter: LoraAdapter) -> dict[str, np.ndarray]:
    """Tensors under peft's key names, for ``peft.set_peft_model_state_dict``."""
    return {PEFT_PREFIX + k: v for k, v in adapter.tensors.items()}


def load_adapter(bundle_path: Path, entry: AdapterEntry) -> LoraAdapter:
    """Read an adapter file of a bundle (already validated by Bundle.open)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(bundle_path / entry.file))
    return LoraAdapter(
        rank=entry.rank, alpha=entry.alpha, targets=tuple(entry.target_modules), tensors=tensors
    )


def merge_adapter(
    weights: Mapping[str, np.ndarray], c: ModelConfig, adapter: LoraAdapter
) -> dict[str, np.ndarray]:
    """Base weights with the adapter folded in (W + scaling * B @ A); other tensors shared."""
    merged = dict(weights)
    for layer in range(c.num_hidden_layers):
        for kind in adapter.targets:
            name = f"{module_name(layer, kind)}.weight"
            w = weights[name]
            merged[name] = (w.astype(np.float32) + adapter.delta(layer, kind)).astype(w.dtype)
    return merged


def stack_adapters(
    c: ModelConfig,
    slots: Sequence[LoraAdapter | None],
    rank: int,
    targets: Sequence[str],
    dtype: np.dtype | type = np.float32,
) -> dict[str, np.ndarray]:
    """Runtime multi-LoRA inputs: ``lora_A.P [L, slots, d_in, rank]``, ``lora_B.P [L, slots,
    rank, d_out]``, scaling folded into B. A ``None`` slot (slot 0 by convention) is zeros;
    an adapter of lower rank is zero-padded; a projection it does not target stays zero.
    """
    n_layers, n_slots = c.num_hidden_layers, len(slots)
    out: dict[str, np.ndarray] = {}
    for kind in targets:
        d_in, d_out = projection_dims(c, kind)
        a = np.zeros((n_layers, n_slots, d_in, rank), dtype)
        b = np.zeros((n_layers, n_slots, rank, d_out), dtype)
        for s, adapter in enumerate(slots):
            if adapter is None or kind not in adapter.targets:
                continue
            if adapter.rank > rank:
                raise ConfigError(
                    f"adapter rank {adapter.rank} exceeds the engine's LoRA rank {rank}; "
                    "re-export with --lora-rank >= the largest adapter rank"
                )
            for layer in range(n_layers):
                r = adapter.rank
                a[layer, s, :, :r] = adapter.a(layer, kind).T
                b[layer, s, :r, :] = adapter.b(layer, kind).T * adapter.scaling
        out[f"lora_A.{kind}"], out[f"lora_B.{kind}"] = a, b
    return out
