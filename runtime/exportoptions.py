"""What ``tinyllm export`` builds: the options of an engine, checked before anything is built.

A leaf of the export side (no onnx, no builder): :mod:`tinyllm.api` reads its defaults, and
:mod:`tinyllm.runtime.export` builds from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from tinyllm.config import PROJECTIONS
from tinyllm.errors import ConfigError
from tinyllm.runtime.targets import TARGETS, require_tensorrt

if TYPE_CHECKING:
    from tinyllm.config import ModelConfig

Target = Literal["onnx-cpu", "onnx-cuda", "onnx-standard", "tensorrt"]


@dataclass(frozen=True)
class ExportOptions:
    """What to export. ``quant`` (int4/int8) quantizes by round-to-nearest at export;
    ``quantized_embedding`` makes the token lookup read int blocks (see
    :func:`tinyllm.runtime.export.quantized_lookup`). ``max_batch`` is the largest batch of
    a TensorRT engine's profile; ``merge_adapter`` names a task whose adapter is folded into
    the base: the engine then serves that task only (the TensorRT fallback when the EP
    cannot take the multi-LoRA graph). ``greedy_ids`` adds the graph output of each row's
    argmax, which greedy rows read instead of the logits (see
    :class:`tinyllm.runtime.builder.BuildOptions`)."""

    target: str = "onnx-cpu"
    precision: str | None = None
    quant: str | None = None
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4
    max_seq_len: int | None = None
    lora_slots: int = 0
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = PROJECTIONS
    quantized_embedding: bool = False
    max_batch: int = 8
    merge_adapter: str | None = None
    greedy_ids: bool = False

    def resolved(self) -> tuple[str, str]:
        """(flavour, precision), checked against the target."""
        if self.target == "hf":
            raise ConfigError(
                "target 'hf' writes a Hugging Face folder, not an engine of the bundle: "
                "use tinyllm.api.export_hf (on the command line: tinyllm export --target hf)"
            )
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}")
        if self.target == "tensorrt":
            require_tensorrt()
        flavour, default = TARGETS[self.target]
        if self.quant is not None:
            if self.quant not in ("int4", "int8"):
                raise ConfigError(f"unknown quantization {self.quant!r}; choose int4 or int8")
            return flavour, self.quant
        precision = self.precision or default
        if precision not in ("fp32", "fp16"):
            raise ConfigError(f"precision {precision!r}: use fp32 or fp16 (or --quant int4|int8)")
        return flavour, precision

    def check(self, config: ModelConfig) -> None:
        """Reject shapes no engine can have, before anything is built."""
        flavour, precision = self.resolved()
        if flavour == "standard" and precision in ("int4", "int8") and self.accuracy_level != 4:
            raise ConfigError(
                "accuracy_level is fixed at 4 for the standard flavour's int weights: its "
                "DequantizeLinear + MatMul pairs run as ONNX Runtime makes them (on the CPU, "
                "fused into MatMulNBits with int8 activations); use onnx-cpu for level 0"
            )
        if self.accuracy_level not in (0, 4):
            raise ConfigError(
                f"accuracy_level must be 0 (float activations) or 4 (int8 activations), "
                f"got {self.accuracy_level}"
            )
        if self.lora_slots < 0:
            raise ConfigError(
                f"lora_slots must be >= 0 (0: no multi-LoRA inputs), got {self.lora_slots}"
            )
        if self.lora_rank < 0 or (self.lora_slots > 0 and self.lora_rank < 1):
            raise ConfigError(
                f"lora_rank must be >= 1 for an engine with LoRA slots, got {self.lora_rank}"
            )
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.merge_adapter is not None and self.lora_slots:
            raise ConfigError(
                "merge_adapter folds the adapter into the base: it takes no LoRA slots "
                f"(got lora_slots={self.lora_slots}; pass --lora-slots 0)"
            )
        context = config.max_position_embeddings
        if self.max_seq_len is not None and self.max_seq_len < 1:
            raise ConfigError(
                f"max_seq_len must be >= 1 token, got {self.max_seq_len} (omit it for the "
                f"model's context of {context} tokens)"
            )
        if self.max_seq_len is not None and self.max_seq_len > context:
            raise ConfigError(
                f"max_seq_len {self.max_seq_len} is above the model's context of {context} "
                "tokens (max_position_embeddings); choose at most that"
            )

    def engine_name(self) -> str:
        """Folder name under engines/, e.g. ``onnx-cpu-int4``; an engine with a merged
        adapter ends in its task (``tensorrt-fp16-sentiment``): one bundle can hold one
        per task."""
        name = f"{self.target}-{self.resolved()[1]}"
        return name if self.merge_adapter is None else f"{name}-{self.merge_adapter}"
