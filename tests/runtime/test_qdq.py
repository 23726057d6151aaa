"""Portable int4/int8 standard graphs: blocked DequantizeLinear + MatMul, exact codes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

import tinyllm
from tinyllm.compress.gptq import gptq_quantize, rtn_quantize
from tinyllm.quantformat import PackedWeight, quantize_rtn
from tinyllm.runtime import Engine, GenerationConfig, builder
from tinyllm.runtime.builder import BuildOptions, build_decoder
from tinyllm.runtime.export import ExportOptions, write_engine
from tinyllm.runtime.qdq import QDQ_OPSET, integer_tensor, tensor_values, to_qdq
from tinyllm.runtime.verify import VerificationError

CASES = [(4, False), (4, True), (8, False), (8, True)]


def run_dequantize(packed: PackedWeight) -> np.ndarray:
    """ONNX Runtime's own DequantizeLinear kernel on the QDQ initializers (no fusion)."""
    q = to_qdq(packed)
    inits = [
        integer_tensor("codes", q.codes, q.bits, q.signed),
        onnx.numpy_helper.from_array(q.scales, "scales"),
    ]
    if q.zero_points is not None:
        inits.append(integer_tensor("zeros", q.zero_points, q.bits, q.signed))
    node = helper.make_node(
        "DequantizeLinear", [i.name for i in inits], ["w"], axis=0, block_size=q.block_size
    )
    out = helper.make_tensor_value_info("w", TensorProto.FLOAT, list(q.codes.shape))
    graph = helper.make_graph([node], "dq", [], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", QDQ_OPSET)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(["w"], {})[0]


def assert_exact(packed: PackedWeight) -> None:
    """The QDQ initializers hold the packing's codes, zero points and scales unchanged, and
    ONNX Runtime's DequantizeLinear gives the packing's float weights bit for bit."""
    q = to_qdq(packed)
    k = packed.in_features
    codes = packed.codes()[:, :k].T.astype(np.int16)  # [K, N]
    stored = tensor_values(integer_tensor("c", q.codes, q.bits, q.signed))
    if q.signed:
        np.testing.assert_array_equal(stored + 2 ** (packed.bits - 1), codes)
    else:
        np.testing.assert_array_equal(stored, codes)
        zeros = tensor_values(integer_tensor("z", q.zero_points, q.bits, False))  # type: ignore[arg-type]
        np.testing.assert_array_equal(zeros, packed.zeros().T.astype(np.int16))
    np.testing.assert_array_equal(q.scales.view(np.uint32), packed.scales.T.view(np.uint32))
    reference = packed.dequantize().T
    np.testing.assert_array_equal(q.dequantize(), reference)
    np.testing.assert_array_equal(run_dequantize(packed), reference)


@pytest.mark.parametrize(("bits", "symmetric"), CASES)
def test_rtn_and_gptq_codes_map_bit_for_bit(bits: int, symmetric: bool) -> None:
    rng = np.random.default_rng(bits + symmetric)
    w = rng.standard_normal((24, 96)).astype(np.float32)
    x = rng.standard_normal((96, 200)).astype(np.float32)
    hessian = torch.from_numpy(2 * x @ x.T / 200)
    assert_exact(quantize_rtn(w, bits, 32, symmetric))
    assert_exact(rtn_quantize(torch.from_numpy(w), bits, 32, symmetric).packed)
    assert_exact(gptq_quantize(torch.from_numpy(w), hessian, bits, 32, symmetric).packed)


def test_a_k_that_is_not_a_multiple_of_the_block_keeps_its_last_partial_block() -> None:
    w = np.random.default_rng(3).standard_normal((8, 40)).astype(np.float32)
    packed = quantize_rtn(w, 4, 16, False)
    assert to_qdq(packed).scales.shape == (3, 8)
    assert_exact(packed)


@pytest.mark.parametrize(("bits", "symmetric"), [(4, False), (8, True)])
def test_nncf_codes_map_bit_for_bit(tiny_llama_bundle: Path, bits: int, symmetric: bool) -> None:
    from tinyllm.compress.nncf_backend import nncf_quantize

    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    data = [{"input_ids": torch.tensor([[1, 5, 9, 2]]), "attention_mask": torch.ones(1, 4)}]
    results = nncf_quantize(loaded.model, loaded.config, bits, 32, symmetric, False, data)
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert_exact(results[name].packed)


def _feeds(config: tinyllm.ModelConfig, ids: list[int]) -> dict[str, np.ndarray]:
    feeds = {
        "input_ids": np.array([ids]),
        "logits_index": np.array([len(ids) - 1]),
        "position_ids": np.arange(len(ids))[None],
        "attention_mask": np.ones((1, len(ids)), np.int64),
    }
    shape = (1, config.num_key_value_heads, 0, config.head_dim)
    for i in range(config.num_hidden_layers):
        for kind in ("key", "value"):
            feeds[f"past_{kind}.{i}"] = np.zeros(shape, np.float32)
    return feeds


@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_unfused_qdq_graph_equals_the_float_graph_of_its_dequantized_weights(
    tiny_llama_bundle: Path, tmp_path: Path, quant: str
) -> None:
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    options = ExportOptions(target="onnx-standard", quant=quant, max_seq_len=64)
    info, weights = write_engine(bundle, tmp_path / "q", options)
    graph = onnx.load(str(tmp_path / "q" / info.model), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert "DequantizeLinear" in ops and not ops & {"MatMulNBits", "GroupQueryAttention"}
    assert [o.version for o in graph.opset_import if o.domain == ""] == [QDQ_OPSET]
    # The int engine's lm_head is the quantized copy of a tied embedding: untie it here.
    untied = dataclasses.replace(bundle.config, tie_word_embeddings=False)
    float_model = build_decoder(untied, weights, BuildOptions("standard", "fp32", max_seq_len=64))
    no_fusion = ort.SessionOptions()
    no_fusion.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    cpu = ["CPUExecutionProvider"]
    qdq = ort.InferenceSession(str(tmp_path / "q" / info.model), no_fusion, cpu)
    ref = ort.InferenceSession(float_model.SerializeToString(), no_fusion, cpu)
    feeds = _feeds(bundle.config, [5, 9, 200, 3, 17])
    got, want = qdq.run(["logits"], feeds)[0], ref.run(["logits"], feeds)[0]
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_standard_int_export_verifies_and_generates(
    tiny_llama_bundle: Path, tmp_path: Path, quant: str
) -> None:
    bundle, verification = tinyllm.export(
        tiny_llama_bundle, "onnx-standard", tmp_path / "s.tllm", quant=quant, max_seq_len=128
    )
    assert verification.passed and verification.precision == quant
    folder = bundle.path / "engines" / f"onnx-standard-{quant}"
    info = json.loads((folder / "engine.json").read_text())
    assert (info["flavour"], info["precision"], info["block_size"]) == ("standard", quant, 32)
    config = GenerationConfig(max_new_tokens=4, ignore_eos=True)
    engine = Engine.load(bundle.path, engine=f"onnx-standard-{quant}")
    assert len(engine.generate("hello", config)[0].token_ids) == 4


def test_verification_fails_a_graph_with_broken_scales(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def doubled(packed: PackedWeight):  # type: ignore[no-untyped-def]
        q = to_qdq(packed)
        return dataclasses.replace(q, scales=q.scales * 2)

    monkeypatch.setattr(builder, "to_qdq", doubled)
    with pytest.raises(VerificationError, match="does not reproduce the model"):
        tinyllm.export(
            tiny_llama_bundle, "onnx-standard", tmp_path / "b.tllm", quant="int4", max_seq_len=64
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
def test_qdq_engine_on_cuda_gives_the_cpu_tokens(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    bundle, _ = tinyllm.export(
        tiny_llama_bundle, "onnx-standard", tmp_path / "g.tllm", quant="int4", max_seq_len=128
    )
    config = GenerationConfig(max_new_tokens=8, ignore_eos=True)
    tokens = {
        device: Engine.load(bundle.path, device=device).generate("hello there", config)[0].token_ids
        for device in ("cpu", "cuda")
    }
    assert tokens["cuda"] == tokens["cpu"]
