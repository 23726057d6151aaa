"""The bundle (``NAME.tllm/``): the one artifact that carries work from stage to stage.

A bundle is read with :meth:`Bundle.open`, which validates it (schema version, file sizes
and hashes, tensor shapes against the model config) and rejects a bad one with an error
naming the file and the problem. It is written with :class:`BundleWriter`, atomically:
files go to a hidden temporary folder beside the target, which is fsynced and swapped into
place in one step only once complete, so a write killed at any point leaves the old bundle
or the new one, never a half bundle. One writer at a time holds an output path's lock.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from tinyllm.config import ModelConfig
from tinyllm.durability import (
    WriterLock,
    exchange_dirs,
    fsync_dir,
    fsync_tree,
    kept_hint,
    recover_folder,
)
from tinyllm.errors import BundleError, BundleExistsError, ConfigError
from tinyllm.integrity import file_sha256, sha256_files
from tinyllm.manifest import (
    MANIFEST,
    TOKENIZER_DIR,
    WEIGHTS,
    FileEntry,
    Manifest,
    check_relative_path,
    parse_manifest,
)
from tinyllm.tensorfile import DTYPE_NAMES, TensorInfo, read_header, save_tensors

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter
    from tinyllm.quantformat import QuantSpec
    from tinyllm.tasks import TaskSpec

# "full" is the former name of "sha256", still accepted.
Verify = Literal["sha256", "size", "full"]
VERIFY_MODES = ("sha256", "size", "full")
__all__ = ["Bundle", "BundleWriter", "Verify", "check_output_path", "file_sha256"]


class Bundle:
    """A validated bundle on disk. Open it with :meth:`Bundle.open`."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self.hash = manifest.content_hash()
        # Files whose sha256 was checked (opened with verify="sha256", or by verify_files)
        # or computed (a bundle just committed): only those may a writer reuse unhashed.
        self.checked: set[str] = set(manifest.files)

    @property
    def hashes_checked(self) -> bool:
        """Whether every file's sha256 was checked or computed in this process."""
        return self.checked >= set(self.manifest.files)

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: Verify = "sha256") -> Bundle:
        """Open and validate a bundle.

        Args:
            path: the ``NAME.tllm`` folder.
            verify: ``"sha256"`` checks every file's sha256 (a digest is remembered by the
                file's identity, see :mod:`tinyllm.integrity`, so a reload of unchanged
                files is fast); ``"size"`` checks only sizes, when asked for.
        """
        if verify not in VERIFY_MODES:
            raise ConfigError(f"verify must be 'sha256' or 'size', got {verify!r}")
        root = Path(path)
        if not root.exists():
            raise BundleError(f"no bundle at {root}: the path does not exist{kept_hint(root)}")
        if not root.is_dir():
            raise BundleError(f"{root} is not a bundle: a bundle is a folder (NAME.tllm/)")
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise BundleError(
                f"{root} has no {MANIFEST}: it is not a tinyllm bundle (or its write was "
                "interrupted); re-create it with `tinyllm import`"
            )
        manifest = parse_manifest(manifest_path.read_text(encoding="utf-8"), str(manifest_path))
        bundle = cls(root, manifest)
        bundle.checked = set()
        bundle._check_files()
        if verify != "size":
            bundle.verify_files(manifest.files)
        bundle._check_weights()
        bundle._check_components()
        return bundle

    @property
    def config(self) -> ModelConfig:
        """The model configuration."""
        return self.manifest.model

    @property
    def weights_path(self) -> Path:
        """Path of the base weights (safetensors)."""
        return self.path / WEIGHTS

    @property
    def tokenizer_dir(self) -> Path:
        """Folder holding tokenizer.json and its config."""
        return self.path / TOKENIZER_DIR

    def file(self, name: str) -> Path:
        """Path of a file the manifest lists; an unlisted name is an error."""
        if name not in self.manifest.files:
            raise BundleError(f"{self.path}: the manifest lists no file {name!r}")
        return self.path / name

    def tensor_infos(self) -> dict[str, TensorInfo]:
        """Names, dtypes and shapes of the base weights, read from the header only."""
        infos, _ = read_header(self.weights_path)
        return infos

    def task_specs(self) -> dict[str, TaskSpec]:
        """The tasks this bundle serves (manifest ``tasks``), as specs."""
        from tinyllm.tasks import task_from_dict

        return {
            name: task_from_dict(data, f"{self.path / MANIFEST}: task {name!r}")
            for name, data in self.manifest.tasks.items()
        }

    def adapter(self, task: str) -> LoraAdapter:
        """The LoRA adapter of ``task``; a clear error names the adapters there are."""
        from tinyllm.adapters import load_adapter

        entry = self.manifest.adapters.get(task)
        if entry is None:
            have = ", ".join(sorted(self.manifest.adapters)) or "none"
            raise BundleError(f"{self.path}: no adapter for task {task!r} (adapters: {have})")
        return load_adapter(self.path, entry)

    def quant_spec(self) -> QuantSpec | None:
        """The quantization spec of a quantized bundle (packed weights), else None."""
        from tinyllm.quantformat import QuantSpec

        data = self.manifest.quantization
        if data is None:
            return None
        try:
            return QuantSpec.from_manifest(data, f"{self.path / MANIFEST}: quantization")
        except ConfigError as e:
            raise BundleError(str(e)) from e

    def size_bytes(self) -> int:
        """Total size of the files the manifest lists."""
        return sum(entry.size for entry in self.manifest.files.values())

    def verify_files(self, names: Iterable[str]) -> None:
        """Check the sha256 of these listed files (remembered digests are reused)."""
        todo = sorted(set(names) - self.checked)
        for name in todo:
            self.file(name)  # an unlisted name is an error
        digests = sha256_files(self.path / name for name in todo)
        for name in todo:
            if digests[self.path / name] != self.manifest.files[name].sha256:
                raise BundleError(
                    f"{self.path / name}: sha256 does not match the manifest (the file was "
                    "modified or corrupted); re-create the bundle"
                )
            self.checked.add(name)

    def _check_files(self) -> None:
        where = self.path / MANIFEST
        for required in (WEIGHTS, f"{TOKENIZER_DIR}/tokenizer.json"):
            if required not in self.manifest.files:
                raise BundleError(f"{where}: a bundle must list {required!r} in its files")
        root = self.path.resolve()
        for name, entry in self.manifest.files.items():
            path = self.path / name
            if not path.resolve().is_relative_to(root):
                raise BundleError(
                    f"{path}: a symbolic link that leads outside the bundle ({path.resolve()}); "
                    "a bundle must hold its own files: copy the file in and re-create it"
                )
            if not path.is_file():
                raise BundleError(f"{path}: the manifest lists this file but it is missing")
            size = path.stat().st_size
            if size != entry.size:
                raise BundleError(
                    f"{path}: size is {size} bytes, the manifest says {entry.size} "
                    "(truncated or replaced file)"
                )

    def _check_weights(self) -> None:
        infos = self.tensor_infos()
        expected = self.config.weight_shapes()
        dtypes = dict.fromkeys(expected, DTYPE_NAMES[self.manifest.dtype])
        spec = self.quant_spec()
        if spec is not None:
            for name in spec.tensors:
                if name not in expected or len(expected[name]) != 2:
                    raise BundleError(
                        f"{self.path / MANIFEST}: quantization names {name!r}, which is not a "
                        "2-D weight of this model"
                    )
                packed = spec.packed_shapes(name, expected.pop(name))
                expected.update(packed)
                dtypes.update({k: "F32" if k.endswith(".scales") else "U8" for k in packed})
        missing = sorted(set(expected) - set(infos))
        if missing:
            raise BundleError(
                f"{self.weights_path}: tensor {missing[0]!r} is missing "
                f"({len(missing)} missing in all)"
            )
        extra = sorted(set(infos) - set(expected))
        if extra:
            raise BundleError(
                f"{self.weights_path}: unexpected tensor {extra[0]!r} for a "
                f"{self.config.family} model of this config"
            )
        for name, shape in expected.items():
            want_dtype = dtypes[name]
            info = infos[name]
            if info.shape != shape:
                raise BundleError(
                    f"{self.weights_path}: tensor {name!r} has shape {list(info.shape)}, "
                    f"the model config needs {list(shape)}"
                )
            if info.dtype != want_dtype:
                raise BundleError(
                    f"{self.weights_path}: tensor {name!r} is {info.dtype}, the manifest "
                    f"says {want_dtype}"
                )

    def _check_components(self) -> None:
        # Here, not at import: adapters brings numpy, which the API's import does not need.
        from tinyllm.adapters import check_adapter_shapes

        where = self.path / MANIFEST
        for task, adapter in self.manifest.adapters.items():
            if adapter.file not in self.manifest.files:
                raise BundleError(f"{where}: adapter {task!r} names unlisted file {adapter.file!r}")
            infos, _ = read_header(self.path / adapter.file)
            check_adapter_shapes(
                self.config,
                adapter.rank,
                adapter.target_modules,
                {k: v.shape for k, v in infos.items()},
                f"{self.path / adapter.file} (adapter {task!r})",
            )
        for name, engine in self.manifest.engines.items():
            prefix = engine.path.rstrip("/") + "/"
            if not any(f.startswith(prefix) for f in self.manifest.files):
                raise BundleError(f"{where}: engine {name!r} has no files under {engine.path!r}")


def check_output_path(source: Bundle, out: str | os.PathLike[str]) -> None:
    """Refuse to write a stage's output over its input bundle.

    Every stage but export writes a child that names its parent; writing it in place
    would destroy the parent while the child's lineage still points at it.
    """
    if Path(out).resolve() == source.path.resolve():
        raise ConfigError(
            f"the output {out} is the input bundle {source.path}: write the result to a new "
            "path (the input stays as the result's parent)"
        )


class BundleWriter:
    """Write a bundle atomically: stage files in a temp folder, then rename into place.

    Use as a context manager; call :meth:`commit` with the manifest (its ``files`` are
    filled in here). Leaving the block without committing, or with an exception, removes
    the temporary folder and leaves any existing bundle at ``out`` untouched.

    Entering the block takes the output path's lock (:class:`tinyllm.durability.WriterLock`):
    a second writer to the same path fails at once with ``BundleLockedError``. Holding it,
    the writer removes what writes killed earlier left behind (staging folders) and puts
    back a previous bundle that an interrupted overwrite had moved aside.
    """

    def __init__(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.out = Path(out)
        self.overwrite = overwrite
        self._tmp: Path | None = None
        self._known: dict[str, FileEntry] = {}
        self._lock = WriterLock(self.out)
        self._check_target()

    def _check_target(self) -> None:
        if self.out.exists() and not self.overwrite:
            raise BundleExistsError(
                f"{self.out} already exists; choose another output path or pass "
                "overwrite=True (--force on the command line)"
            )
        if self.out.exists() and not self.out.is_dir():
            raise BundleExistsError(f"{self.out} exists and is not a bundle folder")

    def __enter__(self) -> BundleWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            recover_folder(self.out)
            self._check_target()  # another writer may have finished while we waited
            self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None
        finally:
            self._lock.release()

    @property
    def staging(self) -> Path:
        """The temporary folder files are written to."""
        if self._tmp is None:
            raise BundleError("BundleWriter used outside its `with` block")
        return self._tmp

    def path(self, name: str) -> Path:
        """Where to write the bundle file ``name`` (parent folders are created)."""
        check_relative_path(name, str(self.out))
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def save_tensors(
        self, name: str, tensors: Mapping[str, Any], metadata: dict[str, str] | None = None
    ) -> None:
        """Write tensors (torch or numpy) as a safetensors file of the bundle."""
        save_tensors(self.path(name), tensors, metadata or {})

    def copy_file(self, src: Path, name: str, entry: FileEntry | None = None) -> None:
        """Bring a file from another (immutable) bundle: hard link if possible, else copy.

        ``entry`` is the file's size and sha256 from a manifest that was verified when its
        bundle was opened: a hard link is the same bytes, so commit reuses it instead of
        hashing the file again (the Hessian cache of an incremental compress is ~1 GB).
        """
        target = self.path(name)
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)
        else:
            if entry is not None and target.stat().st_size == entry.size:
                self._known[name] = entry

    def commit(self, manifest: Manifest) -> Bundle:
        """Hash the staged files, write manifest.json, move the bundle into place, validate."""
        files = {}
        for path in sorted(p for p in self.staging.rglob("*") if p.is_file()):
            name = path.relative_to(self.staging).as_posix()
            if name == MANIFEST:
                continue
            known = self._known.get(name)
            files[name] = known or FileEntry(sha256=file_sha256(path), size=path.stat().st_size)
            if known is None:  # a linked file keeps the source bundle's mode
                path.chmod(0o644)  # staged files may be private (mkstemp); bundles are shareable
        self.staging.chmod(0o755)
        final = dataclasses.replace(manifest, files=files)
        manifest_path = self.staging / MANIFEST
        with manifest_path.open("w", encoding="utf-8") as f:
            f.write(final.to_json())
        fsync_tree(self.staging)  # on disk before the swap makes it visible
        # Validate before the swap, so a bad write never replaces a good bundle.
        Bundle.open(self.staging, verify="size")
        self._swap_into_place()
        return Bundle(self.out, final)

    def _swap_into_place(self) -> None:
        staging = self.staging
        if self.out.exists() and not self.overwrite:
            raise BundleExistsError(f"{self.out} appeared while it was written; nothing replaced")
        if self.out.exists() and exchange_dirs(staging, self.out):
            fsync_dir(self.out.parent)
            shutil.rmtree(staging, ignore_errors=True)  # it holds the previous bundle now
            self._tmp = None
            return
        old: Path | None = None
        if self.out.exists():  # no atomic swap here: two renames, undone by _recover
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old / "bundle")
        os.replace(staging, self.out)
        self._tmp = None
        fsync_dir(self.out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
