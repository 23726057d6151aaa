"""Shared fixtures: tiny bundles built once per session, offline hub, private cache."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# Nothing may download from a model hub; locally built artifacts go to a private cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("TINYLLM_CACHE", tempfile.mkdtemp(prefix="tinyllm-test-cache-"))

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip @pytest.mark.gpu tests where ONNX Runtime has no CUDA provider (what the engine
    needs, whatever torch sees)."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return
    skip = pytest.mark.skip(reason="needs ONNX Runtime's CUDAExecutionProvider")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_llama_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-llama bundle, imported once; copy it before changing it."""
    import tinyllm

    out = tmp_path_factory.mktemp("bundles") / "tiny-llama.tllm"
    return tinyllm.import_model("tiny-llama", out).path


@pytest.fixture(scope="session")
def smollm2_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct (the default model) imported once per session; read-only."""
    import tinyllm

    folder = tmp_path_factory.mktemp("smollm2")
    return tinyllm.import_model("smollm2-135m", folder / "smollm2.tllm").path


@pytest.fixture()
def bundle_copy(tiny_llama_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny-llama bundle that a test may corrupt."""
    dst = tmp_path / "copy.tllm"
    shutil.copytree(tiny_llama_bundle, dst)
    return dst


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes under ``folder``, to prove that nothing was changed."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _reseal(bundle: Path) -> None:
    """Recompute the manifest's file hashes and sizes after a test edited files on purpose.

    This lets a test reach the checks behind the hash check (header, shapes).
    """
    from tinyllm.bundle import file_sha256

    manifest_path = bundle / "manifest.json"
    data = json.loads(manifest_path.read_text())
    for name in data["files"]:
        path = bundle / name
        data["files"][name] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    manifest_path.write_text(json.dumps(data, indent=2))


@pytest.fixture()
def snapshot() -> Callable[[Path], dict[str, bytes]]:
    """Function: every file's bytes under a folder (to prove nothing was changed)."""
    return _snapshot


@pytest.fixture()
def reseal() -> Callable[[Path], None]:
    """Function: recompute a bundle's file hashes after a deliberate edit."""
    return _reseal
