"""Model configuration: one dataclass for the decoder families tinyllm supports.

Configs are dataclasses; JSON is only their serialization. ``from_dict`` rejects unknown
keys, missing keys and mistyped values with an error that names the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from tinyllm.errors import ConfigError

Family = Literal["llama", "qwen2"]
FAMILIES: tuple[str, ...] = get_args(Family)
# The linear projections of a decoder layer (HF names): what LoRA adapts, GPTQ quantizes.
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

T = TypeVar("T")


def _check_value(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a (simple) type annotation; return it, converted if lossless."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        if value not in get_args(annotation):
            choices = ", ".join(repr(c) for c in get_args(annotation))
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(annotation):
            try:
                return _check_value(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} does not match {annotation}")
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item_type, *_) = get_args(annotation) or (Any,)
        items = [_check_value(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        _, value_type = get_args(annotation) or (str, Any)
        return {k: _check_value(v, value_type, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        return from_dict(annotation, value, where)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(annotation, type):
        if not isinstance(value, annotation):
            raise ConfigError(
                f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}"
            )
        return value
    return value


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, rejecting unknown, missing or mistyped keys.

    Args:
        cls: a dataclass type whose fields may be Literals, Optionals, lists, dicts and
            nested dataclasses.
        data: the parsed JSON/YAML mapping.
        where: a path prefix for error messages (e.g. ``manifest.json: model``).
    """
    label = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{label}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            no_default = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if no_default:
                raise ConfigError(f"{label}: missing key {name!r}")
            continue
        kwargs[name] = _check_value(data[name], hints[name], f"{label}.{name}".lstrip("."))
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Serialize a dataclass (recursively) to JSON-ready builtins."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer of the Llama / Qwen2 families (RMSNorm, RoPE, GQA, SwiGLU).

    ``qkv_bias`` / ``o_bias``: Qwen2 has biases on q/k/v only; Llama's ``attention_bias``
    puts them on all four projections.
    """

    family: Family
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"model config: {name} must be positive, got {getattr(self, name)}"
                )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"model config: num_attention_heads ({self.num_attention_heads}) must be a "
                f"multiple of num_key_value_heads ({self.num_key_value_heads})"
            )

    @classmethod
    def from_dict(cls, data: Any, where: str = "model config") -> ModelConfig:
        """Parse a serialized config, naming any unknown or mistyped key."""
        return from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        """Serialize to JSON-ready builtins."""
        result: dict[str, Any] = to_dict(self)
        return result

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected base-weight tensors, in Hugging Face naming, and their shapes."""
        h, i, d = self.hidden_size, self.intermediate_size, self.head_dim
        q_out, kv_out = self.num_attention_heads * d, self.num_key_value_heads * d
        shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (self.vocab_size, h)}
        for layer in range(self.num_hidden_layers):
            p = f"model.layers.{layer}."
            shapes[p + "input_layernorm.weight"] = (h,)
            shapes[p + "post_attention_layernorm.weight"] = (h,)
            for name, out in (("q_proj", q_out), ("k_proj", kv_out), ("v_proj", kv_out)):
                shapes[p + f"self_attn.{name}.weight"] = (out, h)
                if self.qkv_bias:
                    shapes[p + f"self_attn.{name}.bias"] = (out,)
            shapes[p + "self_attn.o_proj.weight"] = (h, q_out)
            if self.o_bias:
                shapes[p + "self_attn.o_proj.bias"] = (h,)
            shapes[p + "mlp.gate_proj.weight"] = (i, h)
            shapes[p + "mlp.up_proj.weight"] = (i, h)
            shapes[p + "mlp.down_proj.weight"] = (h, i)
        shapes["model.norm.weight"] = (h,)
        if not self.tie_word_embeddings:
            shapes["lm_head.weight"] = (self.vocab_size, h)
        return shapes

    def num_parameters(self) -> int:
        """Parameter count of the base model (tied embeddings counted once)."""
        total = 0
        for shape in self.weight_shapes().values():
            n = 1
            for dim in shape:
                n *= dim
            total += n
        return total
