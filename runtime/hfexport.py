"""Export to a Hugging Face folder plus one PEFT adapter folder per task (``--target hf``).

What vLLM (``--enable-lora --lora-modules``), TGI (``LORA_ADAPTERS``) and transformers +
peft load, for serving beyond one machine (docs/deploy.md)::

    OUT/
      config.json               transformers config (+ quantization_config for GPTQ)
      generation_config.json    bos / eos / pad ids
      model.safetensors         float weights, or GPTQ packed linears + float rest
      quantize_config.json      (GPTQ only) the same quantization_config, for older readers
      tokenizer.json ...        the bundle's tokenizer files
      tasks.json                each task's prompt around {input} and its adapter name
      adapters/TASK/            adapter_config.json + adapter_model.safetensors (peft)

The folder is written beside ``OUT`` and renamed into place once every tensor was read
back and found equal, bit for bit, to the bundle's (GPTQ: unpacked to the same integer
codes, zero points and scales).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyllm.adapters import LoraAdapter, to_peft_state_dict
from tinyllm.bundle import Bundle
from tinyllm.errors import BundleExistsError, ConfigError
from tinyllm.manifest import check_relative_path
from tinyllm.quantformat import QuantSpec, read_weights
from tinyllm.runtime.gptqlayout import (
    GPTQ_FORMATS,
    GPTQFormat,
    GPTQLayoutError,
    bundle_numbers,
    check_same,
    from_gptq,
    quantization_config,
    to_gptq,
)
from tinyllm.tensorfile import save_tensors

MODEL_FILE = "model.safetensors"
ADAPTER_DIR = "adapters"
ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
# transformers refuses a safetensors file whose metadata names no framework.
METADATA = {"format": "pt"}


@dataclass(frozen=True)
class HFExport:
    """What :func:`export_hf` wrote: the folder, its adapters and the GPTQ format if any."""

    path: Path
    adapters: dict[str, Path] = field(default_factory=dict)
    gptq_format: str | None = None
    tasks: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A few lines for the command line."""
        kind = f"GPTQ ({self.gptq_format})" if self.gptq_format else "float"
        lines = [f"wrote {self.path} (Hugging Face folder, {kind} weights)"]
        for task, path in self.adapters.items():
            lines.append(f"  adapter {task}: {path}")
        return "\n".join(lines)


def export_hf(
    bundle: Bundle, out: Path, *, gptq_format: GPTQFormat = "gptq", overwrite: bool = False
) -> HFExport:
    """Write ``bundle`` as a Hugging Face folder at ``out`` (see the module docstring).

    Args:
        bundle: an opened bundle, float or quantized (GPTQ/RTN int4/int8, packed).
        out: the folder to write; an existing one is replaced only with ``overwrite``.
        gptq_format: ``gptq`` (v1: zero points stored minus 1, read by every loader) or
            ``gptq_v2`` (zero points as they are); only used for a quantized bundle.
    """
    if gptq_format not in GPTQ_FORMATS:
        raise ConfigError(f"unknown GPTQ checkpoint format {gptq_format!r}; use {GPTQ_FORMATS}")
    out = Path(out)
    check_out(bundle, out, overwrite)
    spec = bundle.quant_spec()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tensors = model_tensors(bundle, spec, gptq_format)
        save_tensors(staging / MODEL_FILE, tensors, METADATA)
        write_configs(staging, bundle, spec, gptq_format)
        for item in bundle.tokenizer_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        adapters = write_adapters(staging, bundle, out)
        tasks = write_tasks(staging, bundle)
        verify_folder(staging, bundle, spec, gptq_format)
        swap_into_place(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return HFExport(
        path=out,
        adapters={t: out / ADAPTER_DIR / t for t in adapters},
        gptq_format=gptq_format if spec is not None else None,
        tasks=tasks,
    )


def check_out(bundle: Bundle, out: Path, overwrite: bool) -> None:
    """Refuse an output inside the bundle, or an existing one without ``overwrite``."""
    resolved, root = out.resolve(), bundle.path.resolve()
    if resolved == root or resolved.is_relative_to(root):
        raise ConfigError(
            f"the output {out} is inside the bundle {bundle.path}: write the Hugging Face "
            "folder somewhere else (bundles are never edited in place)"
        )
    if out.exists() and not overwrite:
        raise BundleExistsError(
            f"{out} already exists; choose another output folder or pass overwrite=True "
            "(--force on the command line)"
        )
    if out.exists() and not out.is_dir():
        raise BundleExistsError(f"{out} exists and is not a folder")


def model_tensors(bundle: Bundle, spec: QuantSpec | None, fmt: GPTQFormat) -> dict[str, np.ndarray]:
    """model.safetensors: the float tensors as they are, packed weights in GPTQ layout."""
    packed, rest = read_weights(bundle)
    tensors = dict(rest)
    for name, p in packed.items():
        check_gptq_name(name)
        tensors.update(to_gptq(name.removesuffix(".weight"), p, fmt))
    return tensors


def check_gptq_name(name: str) -> None:
    """Only the decoder's linear weights have a GPTQ form (``PREFIX.weight``)."""
    if not (name.startswith("model.layers.") and name.endswith("_proj.weight")):
        raise GPTQLayoutError(
            f"packed weight {name!r} is not a decoder linear layer; the GPTQ layout "
            "quantizes only those (export the float parent instead)"
        )


def write_configs(folder: Path, bundle: Bundle, spec: QuantSpec | None, fmt: GPTQFormat) -> None:
    """config.json (architecture, dtype, quantization_config), generation_config.json and,
    for GPTQ, quantize_config.json."""
    from transformers import GenerationConfig

    from tinyllm.models import hf_config

    cfg = hf_config(bundle.config)
    cfg.architectures = [ARCHITECTURES[bundle.config.family]]
    data = json.loads(cfg.to_json_string(use_diff=True))
    # transformers 5 writes dtype and rope_parameters; readers still on transformers 4
    # (TGI's pinned version among them) look for torch_dtype and rope_theta.
    data["dtype"] = data["torch_dtype"] = bundle.manifest.dtype
    data["rope_theta"] = bundle.config.rope_theta
    if spec is not None:
        quant = quantization_config(spec, fmt)
        data["quantization_config"] = quant
        (folder / "quantize_config.json").write_text(json.dumps(quant, indent=2) + "\n")
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    GenerationConfig.from_model_config(cfg).save_pretrained(str(folder))


def adapter_config(adapter: LoraAdapter, base: Path) -> dict[str, object]:
    """peft's adapter_config.json of one adapter (plain LoRA: no rslora, no DoRA)."""
    alpha = adapter.alpha
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base.resolve()),
        "r": adapter.rank,
        "lora_alpha": int(alpha) if float(alpha).is_integer() else alpha,
        "target_modules": sorted(adapter.targets),
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
        "init_lora_weights": True,
        "inference_mode": True,
    }


def served_adapters(bundle: Bundle) -> dict[str, LoraAdapter]:
    """The adapters served beside the base (none when merged into it)."""
    if bundle.manifest.lora_mode == "merged":
        return {}
    return {task: bundle.adapter(task) for task in sorted(bundle.manifest.adapters)}


def write_adapters(folder: Path, bundle: Bundle, out: Path) -> list[str]:
    """adapters/TASK/{adapter_config.json, adapter_model.safetensors} for each adapter."""
    written = []
    for task, adapter in served_adapters(bundle).items():
        check_relative_path(f"{ADAPTER_DIR}/{task}", str(out))
        target = folder / ADAPTER_DIR / task
        target.mkdir(parents=True)
        config = adapter_config(adapter, out)
        (target / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_tensors(target / "adapter_model.safetensors", to_peft_state_dict(adapter), METADATA)
        written.append(task)
    return written


def write_tasks(folder: Path, bundle: Bundle) -> list[str]:
    """tasks.json: each task's prompt around ``{input}`` (none without a chat template)."""
    from tinyllm.tasktable import write_task_table

    specs = bundle.task_specs()
    if not specs:
        return []
    table = write_task_table(folder, specs, bundle.manifest, bundle.tokenizer_dir)
    return sorted(specs) if table is not None else []


def verify_folder(folder: Path, bundle: Bundle, spec: QuantSpec | None, fmt: GPTQFormat) -> None:
    """Read the written tensors back: every number must be the bundle's, bit for bit."""
    from safetensors.numpy import load_file

    written = load_file(str(folder / MODEL_FILE))
    packed, rest = read_weights(bundle)
    for name, value in rest.items():
        same_tensor(name, value, written.get(name))
    for name, p in packed.items():
        prefix = name.removesuffix(".weight")
        check_same(name, bundle_numbers(p), from_gptq(written, prefix, p.bits, p.block_size, fmt))
    for task, adapter in served_adapters(bundle).items():
        saved = load_file(str(folder / ADAPTER_DIR / task / "adapter_model.safetensors"))
        for name, value in to_peft_state_dict(adapter).items():
            same_tensor(f"adapter {task}: {name}", value, saved.get(name))


def same_tensor(name: str, want: np.ndarray, got: np.ndarray | None) -> None:
    """Raise unless ``got`` has ``want``'s dtype, shape and bytes."""
    if got is None or got.dtype != want.dtype or not np.array_equal(got, want):
        raise GPTQLayoutError(
            f"{name}: the written tensor is not the bundle's; the export was not written "
            "(please report this)"
        )


def swap_into_place(staging: Path, out: Path) -> None:
    """Move the finished folder to ``out``, replacing an old one only once complete."""
    for path in staging.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # safetensors may write private files
    staging.chmod(0o755)
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "folder")
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
