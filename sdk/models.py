"""Model sources: Hugging Face folders, GGUF files and named presets, as torch models.

torch and transformers are imported inside the functions that need them, so the rest of
tinyllm (bundle, runtime) imports without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.bundle import Bundle
from tinyllm.config import FAMILIES, ModelConfig
from tinyllm.errors import (
    ModelSourceError,
    UnknownPresetError,
    UnsupportedModelError,
    missing_dependency,
)
from tinyllm.tokenizer import load_hf_tokenizer, tiny_tokenizer

if TYPE_CHECKING:
    import torch

    from tinyllm.adapters import LoraAdapter
    from tinyllm.manifest import DType

GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}


@dataclass
class LoadedModel:
    """A torch model with its tokenizer and tinyllm config, and where it came from."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer
    config: ModelConfig
    source: dict[str, str]


def _torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        raise missing_dependency(str(e.name), "torch", "Loading a torch model") from e
    return torch


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a manifest dtype name."""
    torch = _torch()
    dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in dtypes:
        raise ModelSourceError(f"dtype {name!r} is not supported; use one of {', '.join(dtypes)}")
    return dtypes[name]


def config_from_hf(hf: Any, where: str) -> ModelConfig:
    """Convert a transformers Llama/Qwen2 config to a ModelConfig, rejecting what we lack."""
    family = getattr(hf, "model_type", None)
    if family not in FAMILIES:
        raise UnsupportedModelError(
            f"{where}: architecture {family!r} is not supported; tinyllm supports "
            f"{', '.join(FAMILIES)} (decoder-only, RMSNorm, RoPE, SwiGLU)"
        )
    if getattr(hf, "hidden_act", "silu") != "silu":
        raise UnsupportedModelError(f"{where}: hidden_act {hf.hidden_act!r} (only silu)")
    if getattr(hf, "mlp_bias", False):
        raise UnsupportedModelError(f"{where}: MLP biases are not supported")
    if getattr(hf, "use_sliding_window", False):
        raise UnsupportedModelError(f"{where}: sliding-window attention is not supported")
    rope = dict(getattr(hf, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise UnsupportedModelError(
            f"{where}: RoPE scaling {rope.get('rope_type')!r} is not supported (plain RoPE only)"
        )
    rope_theta = rope.get("rope_theta", getattr(hf, "rope_theta", 10000.0))
    bias = bool(getattr(hf, "attention_bias", False))
    return ModelConfig(
        family=family,
        vocab_size=hf.vocab_size,
        hidden_size=hf.hidden_size,
        intermediate_size=hf.intermediate_size,
        num_hidden_layers=hf.num_hidden_layers,
        num_attention_heads=hf.num_attention_heads,
        num_key_value_heads=hf.num_key_value_heads or hf.num_attention_heads,
        head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads,
        max_position_embeddings=hf.max_position_embeddings,
        rms_norm_eps=float(hf.rms_norm_eps),
        rope_theta=float(rope_theta),
        tie_word_embeddings=bool(hf.tie_word_embeddings),
        qkv_bias=True if family == "qwen2" else bias,
        o_bias=False if family == "qwen2" else bias,
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
        pad_token_id=getattr(hf, "pad_token_id", None),
    )


def hf_config(config: ModelConfig) -> Any:
    """The transformers config (LlamaConfig / Qwen2Config) for a ModelConfig."""
    _torch()
    from transformers import LlamaConfig, Qwen2Config

    common: dict[str, Any] = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        hidden_act="silu",
    )
    if config.family == "qwen2":
        if not config.qkv_bias or config.o_bias:
            raise UnsupportedModelError("qwen2 models have q/k/v biases and no o_proj bias")
        return Qwen2Config(use_sliding_window=False, **common)
    if config.qkv_bias != config.o_bias:
        raise UnsupportedModelError("llama models have biases on all of q/k/v/o or on none")
    return LlamaConfig(attention_bias=config.qkv_bias, mlp_bias=False, **common)


def build_model(config: ModelConfig, dtype: str = "float32", seed: int | None = None) -> Any:
    """A transformers model for ``config``: seeded random if ``seed`` is set, else uninitialized."""
    torch = _torch()
    from transformers import AutoModelForCausalLM

    cfg = hf_config(config)
    if seed is None:
        from transformers.initialization import no_init_weights

        with no_init_weights():
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype(dtype))
    else:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype(dtype))
    return model.eval()


def build_reference(config: ModelConfig, weights: dict[str, Any]) -> Any:
    """A float32 torch model from numpy weights; an ``lm_head.weight`` given for a tied model
    unties it (an engine whose lm_head is quantized but whose embedding lookup is not)."""
    torch = _torch()
    model = build_model(config, "float32")
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    head = state.pop("lm_head.weight", None) if config.tie_word_embeddings else None
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    if head is not None:
        model.lm_head.weight = torch.nn.Parameter(head)
    return model.eval()


def bundle_state_dict(model: Any, config: ModelConfig) -> dict[str, Any]:
    """The model's weights under the bundle's names (tied lm_head dropped), contiguous."""
    state = model.state_dict()
    expected = config.weight_shapes()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ModelSourceError(f"model has no tensor {missing[0]!r} ({len(missing)} missing)")
    return {name: state[name].detach().contiguous() for name in expected}


def load_model(bundle: Bundle, dtype: str | None = None) -> LoadedModel:
    """Load a bundle's base weights into a transformers model, with its tokenizer."""
    _torch()
    from safetensors.torch import load_file

    model = build_model(bundle.config, dtype or bundle.manifest.dtype)
    state = load_file(str(bundle.weights_path))
    if bundle.quant_spec() is not None:
        state = {k: _torch().from_numpy(v) for k, v in dequantized_weights(bundle).items()}
    result = model.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if bundle.config.tie_word_embeddings else set()
    if set(result.missing_keys) - allowed_missing or result.unexpected_keys:
        raise ModelSourceError(
            f"{bundle.weights_path}: weights do not fit the model (missing "
            f"{result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    model.tie_weights()
    tokenizer = load_hf_tokenizer(bundle.tokenizer_dir)
    return LoadedModel(model.eval(), tokenizer, bundle.config, dict(bundle.manifest.source))


def dequantized_weights(bundle: Bundle) -> dict[str, np.ndarray]:
    """A bundle's weights as numpy arrays, packed weights dequantized to float32 (no torch)."""
    from tinyllm.quantformat import read_weights

    packed, rest = read_weights(bundle)
    return {**rest, **{name: p.dequantize() for name, p in packed.items()}}


def load_hf_folder(folder: Path, dtype: str) -> LoadedModel:
    """Load a Hugging Face model folder (config.json + safetensors + tokenizer), offline."""
    torch_dtype(dtype)
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        hf = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"{folder}: cannot read config.json ({e})") from e
    config = config_from_hf(hf, str(folder))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, dtype=torch_dtype(dtype)
        )
    except (OSError, ValueError) as e:
        raise ModelSourceError(f"{folder}: cannot load the model weights ({e})") from e
    tokenizer = load_hf_tokenizer(folder)
    return LoadedModel(model.eval(), tokenizer, config, {"kind": "hf", "ref": str(folder)})


def gguf_architecture(path: Path) -> str:
    """The ``general.architecture`` of a GGUF file, read from its metadata."""
    try:
        from gguf import GGUFReader
    except ImportError as e:
        raise missing_dependency("gguf", "torch", "Reading a GGUF file") from e
    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # gguf raises ValueError, KeyError, struct errors...
        raise ModelSourceError(f"{path}: not a readable GGUF file ({e})") from e
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ModelSourceError(f"{path}: GGUF file has no general.architecture")
    return str(field.contents())


def load_gguf(path: Path, dtype: str) -> LoadedModel:
    """Load a GGUF file (Llama/Qwen2), dequantized to a trainable torch model."""
    arch = gguf_architecture(path)
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path}: GGUF architecture {arch!r} is not supported; tinyllm reads "
            f"{', '.join(GGUF_ARCHITECTURES)} GGUF files"
        )
    torch_dtype(dtype)
    from transformers import AutoModelForCausalLM

    try:
        import accelerate  # noqa: F401  (transformers needs it for GGUF)
    except ImportError as e:
        raise missing_dependency("accelerate", "torch", "Loading a GGUF file") from e
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch_dtype(dtype), local_files_only=True
    )
    config = config_from_hf(model.config, str(path))
    tokenizer = load_hf_tokenizer(path.parent, gguf_file=path.name)
    return LoadedModel(model.eval(), tokenizer, config, {"kind": "gguf", "ref": str(path)})


def load_preset(name: str, dtype: str = "float32") -> LoadedModel:
    """Load a preset by name (a key of :data:`tinyllm.presets.PRESETS`)."""
    from tinyllm.presets import PRESETS, TINY_VOCAB, smollm2_gguf_path

    preset = PRESETS[name]
    if preset.config is None:
        loaded = load_gguf(smollm2_gguf_path(), dtype)
        loaded.source = {"kind": "preset", "ref": name, "file": loaded.source["ref"]}
        return loaded
    model = build_model(preset.config, dtype, seed=preset.seed)
    tokenizer = tiny_tokenizer(TINY_VOCAB)
    return LoadedModel(model, tokenizer, preset.config, {"kind": "preset", "ref": name})


def load_source(source: str, dtype: str = "float32") -> LoadedModel:
    """Load a model from a preset name, a GGUF file or a Hugging Face folder.

    Args:
        source: preset name (see ``tinyllm.presets.PRESETS``), path to a ``.gguf`` file,
            or path to a folder with config.json.
        dtype: float32 | float16 | bfloat16, the dtype of the loaded weights.
    """
    from tinyllm.presets import PRESETS

    if source in PRESETS:
        return load_preset(source, dtype)
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelSourceError(f"{path}: a model file must be a .gguf file")
        return load_gguf(path, dtype)
    if path.is_dir():
        if (path / "config.json").is_file():
            return load_hf_folder(path, dtype)
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; to import a GGUF file, name it: {ggufs[0]}" if ggufs else ""
        raise ModelSourceError(f"{path}: folder has no config.json{hint}")
    if "/" in source or "\\" in source or path.suffix:
        raise ModelSourceError(f"{source}: no such file or folder")
    raise UnknownPresetError(
        f"unknown preset {source!r}; known presets: {', '.join(PRESETS)} "
        "(or give a path to a GGUF file or a Hugging Face folder)"
    )


def import_bundle(
    source: str,
    out: str | os.PathLike[str],
    *,
    dtype: DType = "float32",
    name: str | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Import a model into a new bundle; see :func:`tinyllm.api.import_model`."""
    from tinyllm.bundle import BundleWriter
    from tinyllm.lineage import bundle_name, now
    from tinyllm.manifest import SCHEMA_VERSION, TOKENIZER_DIR, WEIGHTS, Manifest
    from tinyllm.version import __version__

    with BundleWriter(out, overwrite=overwrite) as writer:
        loaded = load_source(source, dtype)
        writer.save_tensors(WEIGHTS, bundle_state_dict(loaded.model, loaded.config))
        loaded.tokenizer.save_pretrained(str(writer.path(TOKENIZER_DIR)))
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=name or bundle_name(out),
            stage="import",
            created_at=now(),
            tinyllm_version=__version__,
            source=loaded.source,
            model=loaded.config,
            dtype=dtype,
        )
        return writer.commit(manifest)


@contextmanager
def adapter_applied(model: Any, adapter: LoraAdapter | None) -> Iterator[Any]:
    """Fold a LoRA adapter into a transformers model's weights for the ``with`` block.

    The original weights are restored exactly on exit (copies, not a subtraction).
    ``None`` leaves the model as it is.
    """
    if adapter is None:
        yield model
        return
    import torch

    from tinyllm.adapters import module_name

    params = dict(model.named_parameters())
    saved: dict[str, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for layer in range(model.config.num_hidden_layers):
                for kind in adapter.targets:
                    name = f"{module_name(layer, kind)}.weight"
                    weight = params[name]
                    saved[name] = weight.detach().clone()
                    delta = torch.from_numpy(adapter.delta(layer, kind))  # [d_out, d_in]
                    weight.add_(delta.to(weight.dtype))
        yield model
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                params[name].copy_(original)
