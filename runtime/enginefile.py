"""An engine folder on disk (``engines/NAME/``): its files' integrity and its engine.json.

Loading an engine checks, before the first token:

- the sha256 of every file the engine reads (the engine folder, the tokenizer, the
  adapters), through the hash cache of :mod:`tinyllm.integrity`, unless the caller asked
  for ``verify="size"``;
- that engine.json tells the truth about the graph: the flavour, float dtype and
  multi-LoRA slots, rank and targets are read off the graph's inputs, ``greedy_ids`` off
  its outputs (an engine.json without the key, as every engine exported before it, says
  false: such graphs have no ``greedy_ids`` output); the context length,
  precision, block size and merged adapter off the metadata export stamps into the model
  (``tinyllm.*`` keys). A lie is a :class:`BundleError` naming engine.json and the field.

Needs only onnxruntime's session (no onnx, no torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tinyllm.config import ModelConfig, from_dict
from tinyllm.errors import BundleError, ConfigError
from tinyllm.manifest import TOKENIZER_DIR, EngineEntry, check_relative_path

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle, Verify
    from tinyllm.runtime.engineinfo import EngineInfo

T = TypeVar("T")
ENGINE_JSON = "engine.json"
# engine.json fields stamped into the ONNX model's metadata at export, as text.
STAMPED = ("max_seq_len", "precision", "block_size", "flavour", "float_dtype")
MERGED = "tinyllm.merged_adapter"  # the task whose adapter is in the weights ("": none)
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16"}


def engine_files(bundle: Bundle, entry: EngineEntry) -> list[str]:
    """The manifest's files an engine reads: its folder, the tokenizer, the adapters."""
    prefixes = (entry.path.rstrip("/") + "/", f"{TOKENIZER_DIR}/")
    adapters = {a.file for a in bundle.manifest.adapters.values()}
    return [f for f in bundle.manifest.files if f.startswith(prefixes) or f in adapters]


def verify_engine_files(bundle: Bundle, entry: EngineEntry, verify: Verify) -> None:
    """Check the sha256 of the files the engine reads (``verify="size"``: sizes only,
    which opening the bundle already checked)."""
    if verify not in ("sha256", "size", "full"):
        raise ConfigError(f"verify must be 'sha256' or 'size', got {verify!r}")
    if verify != "size":
        bundle.verify_files(engine_files(bundle, entry))


def read_engine_info(folder: Path, cls: type[T]) -> T:
    """engine.json parsed into ``cls`` (EngineInfo); any fault is a BundleError naming it."""
    try:
        return from_dict(cls, read_engine_json(folder), str(folder / ENGINE_JSON))
    except ConfigError as e:
        raise BundleError(f"{e}; re-export the engine") from e


def read_engine_json(folder: Path) -> dict[str, Any]:
    """engine.json as a mapping (a clear BundleError when it is not one)."""
    path = folder / ENGINE_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise BundleError(f"{path}: missing; re-export the engine") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e}); re-export the engine") from e
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a JSON object; re-export the engine")
    model = data.get("model")
    if isinstance(model, str):
        try:
            check_relative_path(model, str(path))
        except BundleError as e:
            raise BundleError(f"{path}: field 'model': {e}") from e
        if "/" in model:
            raise BundleError(f"{path}: field 'model' must name a file of the engine folder")
    return data


def stamp(info: EngineInfo) -> dict[str, str]:
    """The metadata export writes into the model, so that load can check engine.json."""
    stamped = {f"tinyllm.{name}": str(getattr(info, name)) for name in STAMPED}
    return stamped | {MERGED: info.merged_adapter or ""}


def check_graph(info: EngineInfo, session: Any, config: ModelConfig, folder: Path) -> None:
    """Check engine.json (``info``) against the loaded graph; a lie is a BundleError.

    Args:
        info: the parsed engine.json.
        session: the ONNX Runtime InferenceSession of its model.
        config: the bundle's model config.
        folder: the engine folder (for messages).
    """
    where = folder / ENGINE_JSON
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}

    def lie(field: str, claimed: object, actual: object) -> BundleError:
        return BundleError(
            f"{where}: field {field!r} says {claimed!r} but the graph has {actual!r}; "
            "engine.json was edited or belongs to another engine: re-export the engine"
        )

    graph_flavour = "ort" if "seqlens_k" in inputs else "standard"
    if info.flavour != graph_flavour:
        raise lie("flavour", info.flavour, graph_flavour)
    past = inputs.get("past_key.0")
    if past is None or "logits" not in outputs:
        raise BundleError(f"{folder / info.model}: not a tinyllm decoder graph; re-export it")
    dtype = _DTYPES.get(past.type, past.type)
    if info.float_dtype != dtype:
        raise lie("float_dtype", info.float_dtype, dtype)
    layers = sum(1 for name in inputs if name.startswith("past_key."))
    if layers != config.num_hidden_layers:
        raise BundleError(
            f"{folder / info.model}: the graph has {layers} layers, the manifest's model "
            f"config {config.num_hidden_layers}: the engine belongs to another model"
        )
    _check_lora(info, inputs, lie)
    if info.greedy_ids != ("greedy_ids" in outputs):
        raise lie("greedy_ids", info.greedy_ids, "greedy_ids" in outputs)
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    for name in STAMPED:
        stamped = metadata.get(f"tinyllm.{name}")
        if stamped is not None and str(getattr(info, name)) != stamped:
            raise lie(name, getattr(info, name), stamped)
    merged = metadata.get(MERGED)  # absent in engines exported before --merge-adapter
    if merged is not None and (info.merged_adapter or "") != merged:
        raise lie("merged_adapter", info.merged_adapter, merged or None)
    if info.max_seq_len < 1:
        raise lie("max_seq_len", info.max_seq_len, "a positive context length")


def _check_lora(info: EngineInfo, inputs: dict[str, Any], lie: Any) -> None:
    """lora_slots, lora_rank, lora_targets against the graph's multi-LoRA inputs."""
    targets = sorted(n.removeprefix("lora_A.") for n in inputs if n.startswith("lora_A."))
    slots = rank = 0
    if targets:
        shape = inputs[f"lora_A.{targets[0]}"].shape  # [layers, slots, d_in, rank]
        slots, rank = shape[1], shape[3]
    if info.lora_slots != slots:
        raise lie("lora_slots", info.lora_slots, slots)
    if slots and info.lora_rank != rank:
        raise lie("lora_rank", info.lora_rank, rank)
    if sorted(info.lora_targets) != targets:
        raise lie("lora_targets", list(info.lora_targets), targets)
