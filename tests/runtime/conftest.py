"""Runtime fixtures: tiny bundles with exported engines, built once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tinyllm


@pytest.fixture(scope="session")
def tiny_qwen2_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-qwen2 bundle (untied lm_head, q/k/v biases, 4:1 GQA)."""
    out = tmp_path_factory.mktemp("bundles") / "tiny-qwen2.tllm"
    return tinyllm.import_model("tiny-qwen2", out).path


@pytest.fixture(scope="session")
def exported(tiny_llama_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-llama with an fp32 onnx-cpu engine and an onnx-standard engine."""
    folder = tmp_path_factory.mktemp("exported")
    first, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", folder / "tiny.tllm", max_seq_len=256)
    bundle, _ = tinyllm.export(first.path, "onnx-standard", max_seq_len=256)
    return bundle.path


def _random_adapter(
    config: tinyllm.ModelConfig, rank: int, targets: tuple[str, ...], seed: int
) -> Any:
    """A LoRA adapter with random A and B (large enough to change the outputs)."""
    import numpy as np

    from tinyllm.adapters import LoraAdapter, adapter_shapes

    rng = np.random.default_rng(seed)
    tensors = {
        k: rng.standard_normal(s).astype(np.float32) * 0.15
        for k, s in adapter_shapes(config, rank, targets).items()
    }
    return LoraAdapter(rank=rank, alpha=2.0 * rank, targets=targets, tensors=tensors)


@pytest.fixture(scope="session")
def served(tiny_qwen2_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 serving three built-in tasks (label, JSON, text), two with adapters,
    exported with the default LoRA slots (2 adapters + base + 2 spare)."""
    folder = tmp_path_factory.mktemp("served")
    suite = tinyllm.api.load_tasks()
    config = tinyllm.open_bundle(tiny_qwen2_bundle).config
    tasks = [suite.task(n) for n in ("sentiment", "booking", "rewrite")]
    adapters = {
        "sentiment": _random_adapter(config, 2, ("q_proj", "v_proj", "down_proj"), 0),
        "booking": _random_adapter(config, 4, ("up_proj", "o_proj"), 1),
    }
    child = tinyllm.api.add_tasks(tiny_qwen2_bundle, folder / "tasks.tllm", tasks, adapters)
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", folder / "served.tllm", max_seq_len=256)
    return bundle.path


@pytest.fixture()
def random_adapter() -> Any:
    """Function (config, rank, targets, seed) -> a random LoraAdapter."""
    return _random_adapter
