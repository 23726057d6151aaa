"""The adapter contract: shapes checked against the config, delta, merge, slot stacking."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyllm
from tinyllm.adapters import (
    LoraAdapter,
    adapter_shapes,
    from_peft_state_dict,
    load_adapter,
    merge_adapter,
    stack_adapters,
)
from tinyllm.bundle import Bundle, BundleWriter
from tinyllm.errors import BundleError, ConfigError


def random_adapter(
    config: tinyllm.ModelConfig, rank: int, targets: tuple[str, ...], seed: int
) -> LoraAdapter:
    rng = np.random.default_rng(seed)
    tensors = {
        k: rng.standard_normal(s).astype(np.float32) * 0.1
        for k, s in adapter_shapes(config, rank, targets).items()
    }
    return LoraAdapter(rank=rank, alpha=2.0 * rank, targets=targets, tensors=tensors)


def write_with_adapter(src: Bundle, out: Path, adapter: LoraAdapter) -> Bundle:
    with BundleWriter(out) as w:
        for name in src.manifest.files:
            w.copy_file(src.path / name, name)
        w.save_tensors("adapters/t.safetensors", adapter.tensors)
        man = dataclasses.replace(
            src.manifest, adapters={"t": adapter.entry("adapters/t.safetensors")}
        )
        return w.commit(man)


def test_peft_adapter_round_trips_and_merge_matches_peft(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    targets = ("q_proj", "v_proj", "down_proj")
    torch.manual_seed(0)
    base = tinyllm.load_torch_model(bundle).model
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets), init_lora_weights=False)
    )
    adapter = from_peft_state_dict(get_peft_model_state_dict(peft_model), 4, 8, targets)
    written = write_with_adapter(bundle, tmp_path / "a.tllm", adapter)
    loaded = load_adapter(written.path, written.manifest.adapters["t"])
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
    from safetensors.numpy import load_file

    merged = merge_adapter(load_file(str(bundle.weights_path)), bundle.config, loaded)
    ref = tinyllm.models.build_reference(bundle.config, merged)
    with torch.no_grad():
        got = ref(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_peft_snapshot_does_not_follow_later_training(tiny_llama_bundle: Path) -> None:
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    peft_model = get_peft_model(
        tinyllm.load_torch_model(bundle).model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False),
    )
    snapshot = from_peft_state_dict(get_peft_model_state_dict(peft_model), 4, 8, ("q_proj",))
    before = {k: v.copy() for k, v in snapshot.tensors.items()}
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    for name, value in snapshot.tensors.items():
        np.testing.assert_array_equal(value, before[name])


def test_bundle_rejects_adapter_of_wrong_rank(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    adapter = random_adapter(bundle.config, 4, ("q_proj",), 0)
    lying = dataclasses.replace(adapter, rank=8)
    with pytest.raises(BundleError, match="rank mismatch"):
        write_with_adapter(bundle, tmp_path / "b.tllm", lying)
    assert not (tmp_path / "b.tllm").exists()


def test_stack_pads_lower_ranks_and_rejects_larger(tiny_llama_bundle: Path) -> None:
    c = tinyllm.open_bundle(tiny_llama_bundle).config
    small = random_adapter(c, 2, ("q_proj",), 1)
    stacked = stack_adapters(c, [None, small], rank=4, targets=("q_proj", "v_proj"))
    a, b = stacked["lora_A.q_proj"], stacked["lora_B.q_proj"]
    assert a.shape == (c.num_hidden_layers, 2, c.hidden_size, 4)
    assert not a[:, 0].any() and not stacked["lora_B.v_proj"].any()
    # The stacked product equals the adapter's delta (scaling folded into B), transposed.
    np.testing.assert_allclose(a[1, 1] @ b[1, 1], small.delta(1, "q_proj").T, atol=1e-6)
    with pytest.raises(ConfigError, match="exceeds the engine's LoRA rank"):
        stack_adapters(c, [small], rank=1, targets=("q_proj",))


def test_add_tasks_writes_specs_and_adapters(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    suite = tinyllm.api.load_tasks()
    spec = suite.task("sentiment")
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    adapter = random_adapter(bundle.config, 2, ("q_proj", "down_proj"), 3)
    child = tinyllm.api.add_tasks(
        tiny_llama_bundle, tmp_path / "c.tllm", [spec], {"sentiment": adapter}
    )
    reopened = tinyllm.open_bundle(child.path)
    assert reopened.task_specs() == {"sentiment": spec}
    assert reopened.manifest.lora_mode == "separate"
    assert reopened.manifest.lineage[0].hash == bundle.manifest.content_hash()
    got = reopened.adapter("sentiment")
    np.testing.assert_array_equal(got.delta(0, "q_proj"), adapter.delta(0, "q_proj"))
    with pytest.raises(BundleError, match="no adapter for task 'intent'"):
        reopened.adapter("intent")
    with pytest.raises(ConfigError, match="names no task"):
        tinyllm.api.add_tasks(tiny_llama_bundle, tmp_path / "d.tllm", [], {"intent": adapter})
    assert not (tmp_path / "d.tllm").exists()
