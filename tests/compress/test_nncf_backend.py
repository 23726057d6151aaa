"""NNCF's compressed weights, repacked in our MatMulNBits layout, decode to what NNCF computes."""

from __future__ import annotations

from pathlib import Path

import nncf  # noqa: F401  (CI installs it with the compress extra: a missing one must fail)
import numpy as np
import pytest
import torch

from tinyllm import api
from tinyllm.adapters import LoraAdapter, adapter_shapes
from tinyllm.bundle import Bundle
from tinyllm.compress.gptq import QuantResult
from tinyllm.compress.hessian import AdapterApplied
from tinyllm.compress.nncf_backend import (
    HOOK_PREFIX,
    awq_scales,
    nncf_quantize,
    rescale_adapter,
    unscale_results,
)
from tinyllm.errors import ConfigError


@pytest.mark.parametrize(("bits", "symmetric"), [(4, False), (4, True), (8, False), (8, True)])
def test_repacked_weights_decode_like_nncf(
    tiny_llama_bundle: Path, bits: int, symmetric: bool
) -> None:
    from nncf.torch.quantization.layers import BaseWeightsDecompressor

    loaded = api.load_torch_model(tiny_llama_bundle)
    float_w = loaded.model.state_dict()["model.layers.1.mlp.down_proj.weight"].clone()
    data = [{"input_ids": torch.tensor([[1, 5, 9, 2]]), "attention_mask": torch.ones(1, 4)}]
    results = nncf_quantize(loaded.model, loaded.config, bits, 32, symmetric, False, data)
    assert len(results) == 7 * loaded.config.num_hidden_layers
    state = loaded.model.state_dict()
    for name, module in loaded.model.named_modules():
        if isinstance(module, BaseWeightsDecompressor) and "layers:1:mlp:down_proj" in name:
            assert name.startswith(HOOK_PREFIX)
            theirs = module(state["model.layers.1.mlp.down_proj.weight"]).float()
    ours = results["model.layers.1.mlp.down_proj.weight"]
    torch.testing.assert_close(ours.dequantized, theirs, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(
        torch.from_numpy(ours.packed.dequantize()), ours.dequantized, atol=1e-6, rtol=0
    )
    assert (ours.dequantized - float_w).abs().max() < (0.1 if bits == 4 else 0.01)


def test_awq_needs_int4(tiny_llama_bundle: Path) -> None:
    loaded = api.load_torch_model(tiny_llama_bundle)
    with pytest.raises(ConfigError, match="int4 only"):
        nncf_quantize(loaded.model, loaded.config, 8, 32, False, True, [])
    with pytest.raises(ConfigError, match="at least one input"):
        nncf_quantize(loaded.model, loaded.config, 4, 32, False, False, [])


def test_compress_with_nncf_awq_writes_an_exportable_bundle(
    tiny_llama_bundle: Path, tiny_suite: Path, tmp_path: Path
) -> None:
    bundle, report = api.compress(
        tiny_llama_bundle,
        tmp_path / "n.tllm",
        quant="int4-nncf-awq",
        tasks=tiny_suite,
        names=["alpha", "beta"],
        calib_samples=4,
        progress=False,
    )
    spec = bundle.quant_spec()
    assert spec is not None and (spec.backend, spec.method, spec.bits) == ("nncf", "nncf-awq", 4)
    # The error report maps AWQ's scaled weights back to the float model's space.
    assert set(report.task_errors) == {"alpha", "beta"}
    assert all(0 < e < 0.1 for e in report.task_errors.values())
    rtn, _ = api.compress(
        tiny_llama_bundle, tmp_path / "r.tllm", quant="int4-rtn", tasks=tiny_suite, progress=False
    )
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])
    with torch.no_grad():
        want = api.load_torch_model(tiny_llama_bundle).model(ids).logits
        # up_proj/down_proj carry AWQ's scales: the model computes the float function.
        errs = [
            (api.load_torch_model(b.path).model(ids).logits - want).abs().mean()
            for b in (bundle, rtn)
        ]
    print("logit error awq, rtn:", errs)
    assert errs[0] < 1.5 * errs[1]
    _, verification = api.export(bundle.path, out=tmp_path / "e.tllm")
    assert verification.passed


def _adapter(bundle: Bundle, seed: int) -> LoraAdapter:
    targets = ("q_proj", "up_proj", "down_proj")
    rng = np.random.default_rng(seed)
    shapes = adapter_shapes(bundle.config, 4, targets)
    tensors = {k: rng.standard_normal(v).astype(np.float32) * 0.2 for k, v in shapes.items()}
    return LoraAdapter(rank=4, alpha=8.0, targets=targets, tensors=tensors)


def test_awq_scales_are_recovered_and_adapters_follow_them(tiny_llama_bundle: Path) -> None:
    """Scaled up/down weights (as AWQ leaves them, plus int4-like noise): the scale comes
    back, and the rescaled adapter over the scaled weights is the float model + adapter."""
    loaded = api.load_torch_model(tiny_llama_bundle)
    config, model = loaded.config, loaded.model
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    scales, results = {}, {}
    for layer in range(config.num_hidden_layers):
        s = torch.rand(config.intermediate_size, generator=gen) * 3 + 0.25
        scales[layer] = s
        up, down = (f"model.layers.{layer}.mlp.{k}_proj.weight" for k in ("up", "down"))
        for name, scaled in ((up, before[up] / s[:, None]), (down, before[down] * s[None, :])):
            noise = torch.randn(scaled.shape, generator=gen) * scaled.abs().mean() * 0.05
            results[name] = QuantResult(None, scaled + noise)  # type: ignore[arg-type]
    found = awq_scales(before, results, config)
    for layer, s in scales.items():
        torch.testing.assert_close(found[layer], s, rtol=0.03, atol=0)
    back = unscale_results(results, found)
    name = "model.layers.1.mlp.down_proj.weight"
    assert (back[name].dequantized - before[name]).abs().mean() < 0.1 * before[name].abs().mean()

    adapter = _adapter(Bundle.open(tiny_llama_bundle), 0)
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])
    with AdapterApplied(model, config, adapter), torch.no_grad():
        want = model(ids).logits
    exact = {n: QuantResult(None, w) for n, w in before.items()}  # type: ignore[arg-type]
    with torch.no_grad():
        for layer, s in scales.items():
            mlp = model.model.layers[layer].mlp
            mlp.up_proj.weight.div_(s[:, None])
            mlp.down_proj.weight.mul_(s[None, :])
            for k in ("up", "down"):
                name = f"model.layers.{layer}.mlp.{k}_proj.weight"
                exact[name] = QuantResult(None, getattr(mlp, f"{k}_proj").weight.clone())  # type: ignore[arg-type]
    torch.testing.assert_close(awq_scales(before, exact, config)[0], scales[0], rtol=1e-4, atol=0)
    with AdapterApplied(model, config, rescale_adapter(adapter, scales)), torch.no_grad():
        torch.testing.assert_close(model(ids).logits, want, rtol=1e-4, atol=1e-4)
    with AdapterApplied(model, config, adapter), torch.no_grad():
        assert (model(ids).logits - want).abs().max() > 1e-2  # the unscaled adapter is off


def test_separate_adapters_survive_awq(
    tiny_llama_bundle: Path, tiny_suite: Path, tmp_path: Path
) -> None:
    bundle = Bundle.open(tiny_llama_bundle)
    adapter = _adapter(bundle, 1)
    suite = api.load_tasks(tiny_suite)
    src = api.add_tasks(bundle.path, tmp_path / "a.tllm", [suite.task("alpha")], {"alpha": adapter})
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])

    def logits(path: Path, with_adapter: LoraAdapter) -> torch.Tensor:
        m = api.load_torch_model(path)
        with AdapterApplied(m.model, m.config, with_adapter), torch.no_grad():
            return m.model(ids).logits

    want = logits(src.path, adapter)
    awq, _ = api.compress(
        src.path,
        tmp_path / "awq.tllm",
        quant="int4-nncf-awq",
        tasks=tiny_suite,
        names=["alpha"],
        calib_samples=4,
        progress=False,
    )
    rtn, _ = api.compress(src.path, tmp_path / "r.tllm", quant="int4-rtn", progress=False)
    stored = awq.adapter("alpha")
    key = "model.layers.0.mlp.up_proj.lora_B.weight"
    assert not np.array_equal(stored.tensors[key], adapter.tensors[key])  # moved, not copied
    err_stored = (logits(awq.path, stored) - want).abs().mean()
    err_original = (logits(awq.path, adapter) - want).abs().mean()
    err_rtn = (logits(rtn.path, adapter) - want).abs().mean()
    print(
        "logit error: rescaled adapter, original adapter, rtn:", err_stored, err_original, err_rtn
    )
    assert err_stored < 0.5 * err_original
    assert err_stored < 1.5 * err_rtn


def test_data_free_asymmetric_int4_nncf_equals_our_rtn(tiny_llama_bundle: Path) -> None:
    """Two independent implementations of asymmetric int4 round-to-nearest agree: the same
    codes and zero points, scales equal up to float rounding."""
    from tinyllm.compress.gptq import rtn_quantize

    loaded = api.load_torch_model(tiny_llama_bundle)
    before = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
    data = [{"input_ids": torch.tensor([[1, 5, 9, 2]]), "attention_mask": torch.ones(1, 4)}]
    results = nncf_quantize(loaded.model, loaded.config, 4, 32, False, False, data)
    for name, result in results.items():
        ours = rtn_quantize(before[name], 4, 32, symmetric=False).packed
        np.testing.assert_array_equal(result.packed.qweight, ours.qweight, err_msg=name)
        np.testing.assert_array_equal(result.packed.zero_points, ours.zero_points, err_msg=name)
        np.testing.assert_allclose(result.packed.scales, ours.scales, rtol=1e-3, err_msg=name)
