"""NNCF's compressed weights, repacked in our MatMulNBits layout, decode to what NNCF computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tinyllm import api
from tinyllm.compress.nncf_backend import HOOK_PREFIX, nncf_quantize
from tinyllm.errors import ConfigError

pytest.importorskip("nncf")


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
    assert report.task_errors == {}  # AWQ rescales inputs: the error proxy does not apply
    rtn, _ = api.compress(
        tiny_llama_bundle, tmp_path / "r.tllm", quant="int4-rtn", tasks=tiny_suite, progress=False
    )
    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])
    with torch.no_grad():
        want = api.load_torch_model(tiny_llama_bundle).model(ids).logits
        # The norms carry AWQ's scales: without them the error would be far larger.
        errs = [
            (api.load_torch_model(b.path).model(ids).logits - want).abs().mean()
            for b in (bundle, rtn)
        ]
    print("logit error awq, rtn:", errs)
    assert errs[0] < 1.5 * errs[1]
    _, verification = api.export(bundle.path, out=tmp_path / "e.tllm")
    assert verification.passed
