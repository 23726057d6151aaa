"""The bundle manifest (manifest.json): what a bundle holds, where it came from, its hashes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from tinyllm.config import ModelConfig, from_dict, to_dict
from tinyllm.errors import BundleError, ConfigError, SchemaVersionError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TOKENIZER_DIR = "tokenizer"

Stage = Literal["import", "distill", "compress", "export"]
DType = Literal["float32", "float16", "bfloat16"]


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle: its sha256 and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class BundleRef:
    """A reference to another bundle (a parent), by content hash."""

    hash: str
    name: str
    stage: Stage
    path: str = ""


@dataclass(frozen=True)
class AdapterEntry:
    """A LoRA adapter kept separately from the base weights (peft naming and layout)."""

    file: str
    rank: int
    alpha: float
    target_modules: list[str]


@dataclass(frozen=True)
class EngineEntry:
    """An exported inference engine stored under ``engines/NAME/``."""

    target: str
    path: str
    precision: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """Contents of manifest.json. ``lineage`` lists ancestors, the parent first."""

    schema_version: int
    name: str
    stage: Stage
    created_at: str
    tinyllm_version: str
    source: dict[str, str]
    model: ModelConfig
    dtype: DType
    files: dict[str, FileEntry] = field(default_factory=dict)
    lineage: list[BundleRef] = field(default_factory=list)
    quantization: dict[str, Any] | None = None
    lora_mode: Literal["separate", "merged"] | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    adapters: dict[str, AdapterEntry] = field(default_factory=dict)
    engines: dict[str, EngineEntry] = field(default_factory=dict)

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys), the form that is hashed and written."""
        return json.dumps(to_dict(self), indent=2, sort_keys=True) + "\n"

    def content_hash(self) -> str:
        """sha256 of the canonical manifest; it covers every file through their hashes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def ref(self, path: str = "") -> BundleRef:
        """A reference to this bundle, for a child's lineage."""
        return BundleRef(hash=self.content_hash(), name=self.name, stage=self.stage, path=path)


def parse_manifest(text: str, where: str) -> Manifest:
    """Parse and validate manifest.json text; errors name ``where`` and the bad key."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise BundleError(f"{where}: expected a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        hint = (
            "it was written by a newer tinyllm: upgrade tinyllm"
            if isinstance(version, int) and version > SCHEMA_VERSION
            else "re-create it with `tinyllm import`"
        )
        raise SchemaVersionError(
            f"{where}: schema_version {version!r} is not supported (this tinyllm reads "
            f"version {SCHEMA_VERSION}); {hint}"
        )
    try:
        manifest = from_dict(Manifest, data, where)
    except ConfigError as e:
        raise BundleError(str(e)) from e
    for name in manifest.files:
        check_relative_path(name, where)
    return manifest


def check_relative_path(name: str, where: str) -> None:
    """Reject file names that would escape the bundle folder."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or "\\" in name:
        raise BundleError(f"{where}: file name {name!r} must be a relative path inside the bundle")
