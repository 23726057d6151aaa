"""The public API. Every CLI command is a thin shim over one function here."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.inspection import Inspection, inspect_bundle
from tinyllm.manifest import SCHEMA_VERSION, TOKENIZER_DIR, WEIGHTS, Manifest
from tinyllm.version import __version__

if TYPE_CHECKING:
    from tinyllm.models import LoadedModel

PathLike = str | os.PathLike[str]
DTypeName = Literal["float32", "float16", "bfloat16"]


def open_bundle(path: PathLike) -> Bundle:
    """Open and fully validate a bundle (schema, hashes, tensor shapes)."""
    return Bundle.open(path)


def import_model(
    source: str,
    out: PathLike,
    *,
    dtype: DTypeName = "float32",
    name: str | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Import a model into a new bundle: the start of every tinyllm pipeline.

    Args:
        source: a preset name (``smollm2-135m``, ``qwen2.5-0.5b-shape``, ``tiny-llama``,
            ``tiny-qwen2``), a ``.gguf`` file, or a Hugging Face model folder.
        out: the bundle folder to write (``NAME.tllm``).
        dtype: dtype of the stored weights.
        name: the bundle's name (default: the folder name without ``.tllm``).
        overwrite: replace an existing bundle at ``out`` (atomically).
    """
    from tinyllm.models import bundle_state_dict, load_source

    with BundleWriter(out, overwrite=overwrite) as writer:
        loaded = load_source(source, dtype)
        writer.save_tensors(WEIGHTS, bundle_state_dict(loaded.model, loaded.config))
        loaded.tokenizer.save_pretrained(str(writer.path(TOKENIZER_DIR)))
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            name=name or Path(out).name.removesuffix(".tllm"),
            stage="import",
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            tinyllm_version=__version__,
            source=loaded.source,
            model=loaded.config,
            dtype=dtype,
        )
        return writer.commit(manifest)


def inspect(bundle: PathLike) -> Inspection:
    """Summarize a bundle: parameters by kind, size, dtype, tasks, adapters, engines, lineage."""
    return inspect_bundle(open_bundle(bundle))


def load_torch_model(bundle: PathLike | Bundle, dtype: DTypeName | None = None) -> LoadedModel:
    """Load a bundle as a transformers model with its tokenizer (needs ``tinyllm[torch]``)."""
    from tinyllm.models import load_model

    opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    return load_model(opened, dtype)
