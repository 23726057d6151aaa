"""Graph builder: parity with torch for both flavours, int weights, per-row LoRA slots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors.numpy import load_file

import tinyllm
from tinyllm.models import build_reference
from tinyllm.runtime.builder import BuildOptions, build_decoder
from tinyllm.runtime.export import ExportOptions, dequantized, packed_weights

TEXTS = ["Book a table for four people in Lisbon.", "What is 17 plus 25?"]


def run_graph(
    model, config, ids: np.ndarray, flavour: str, extra: dict | None = None
) -> np.ndarray:
    """All-position logits of a (right-padded) batch through a built graph."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    b, s = ids.shape
    feeds = {"input_ids": ids, **(extra or {})}
    kv = (b, config.num_key_value_heads, 32 if flavour == "ort" else 0, config.head_dim)
    for i in range(config.num_hidden_layers):
        feeds[f"past_key.{i}"] = np.zeros(kv, np.float32)
        feeds[f"past_value.{i}"] = np.zeros(kv, np.float32)
    if flavour == "ort":
        feeds["seqlens_k"] = np.full(b, s - 1, np.int32)
        feeds["total_sequence_length"] = np.array(s, np.int32)
    else:
        feeds["position_ids"] = np.tile(np.arange(s), (b, 1))
        feeds["attention_mask"] = np.ones((b, s), np.int64)
    return sess.run(["logits"], feeds)[0]


def tokens(bundle: Path, text: str) -> np.ndarray:
    tok = tinyllm.load_torch_model(bundle).tokenizer
    return np.array([tok(text)["input_ids"]])


@pytest.mark.parametrize("flavour", ["ort", "standard"])
@pytest.mark.parametrize("which", ["tiny_llama_bundle", "tiny_qwen2_bundle"])
def test_fp32_parity_with_torch(which: str, flavour: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(which)
    bundle = tinyllm.open_bundle(path)
    weights = load_file(str(bundle.weights_path))
    graph = build_decoder(
        bundle.config, weights, BuildOptions(flavour=flavour, all_logits=True, max_seq_len=64)
    )
    model = tinyllm.load_torch_model(bundle).model
    for text in TEXTS:
        ids = tokens(path, text)
        with torch.no_grad():
            expected = model(torch.from_numpy(ids)).logits.numpy()
        got = run_graph(graph, bundle.config, ids, flavour)
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("lookup", [False, True])
@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_int_weights_match_dequantized_reference(
    tiny_qwen2_bundle: Path, quant: str, lookup: bool
) -> None:
    bundle = tinyllm.open_bundle(tiny_qwen2_bundle)
    weights = load_file(str(bundle.weights_path))
    packed = packed_weights(weights, False, ExportOptions(quant=quant, quantized_embedding=lookup))
    options = BuildOptions(
        precision=quant,
        packed=packed,
        all_logits=True,
        accuracy_level=0,
        quantized_embedding=lookup,
    )
    graph = build_decoder(bundle.config, weights, options)
    truth = dequantized(weights, packed, tied=False, lookup=lookup)
    reference = build_reference(bundle.config, truth)
    full = tinyllm.load_torch_model(bundle).model
    ids = tokens(tiny_qwen2_bundle, TEXTS[0])
    got = run_graph(graph, bundle.config, ids, "ort")
    with torch.no_grad():
        same_weights = reference(torch.from_numpy(ids)).logits.numpy()
        float_model = full(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(got, same_weights, atol=1e-4, rtol=0)
    # Quantization error itself is bounded, and larger for 4 bits than for 8.
    error = np.abs(got - float_model).max()
    assert 0 < error < (0.05 if quant == "int8" else 0.6)
    ops = {n.op_type for n in graph.graph.node}
    assert ops >= {"MatMulNBits", "GroupQueryAttention"}
    assert ("GatherBlockQuantized" in ops) == lookup
    tables = {i.name for i in graph.graph.initializer}
    assert ("model.embed_tokens.weight" in tables) != lookup


@pytest.mark.parametrize("quant", ["int8", "int4"])
def test_tied_lookup_shares_the_lm_head_blocks(tiny_llama_bundle: Path, quant: str) -> None:
    """Tied embeddings: one int initializer read by the lm head and the token lookup, no
    float table, and the logits of the model whose table is the dequantized blocks."""
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    assert bundle.config.tie_word_embeddings
    weights = load_file(str(bundle.weights_path))
    packed = packed_weights(weights, True, ExportOptions(quant=quant))
    options = BuildOptions(
        precision=quant, packed=packed, all_logits=True, accuracy_level=0, quantized_embedding=True
    )
    graph = build_decoder(bundle.config, weights, options)
    readers = [n.op_type for n in graph.graph.node if "lm_head.qweight" in n.input]
    assert sorted(readers) == ["GatherBlockQuantized", "MatMulNBits"]
    names = [i.name for i in graph.graph.initializer]
    assert "model.embed_tokens.weight" not in names and names.count("lm_head.qweight") == 1
    ids = tokens(tiny_llama_bundle, TEXTS[1])
    got = run_graph(graph, bundle.config, ids, "ort")
    results = {}
    for lookup in (True, False):
        truth = dequantized(weights, packed, tied=True, lookup=lookup)
        with torch.no_grad():
            model = build_reference(bundle.config, truth)
            results[lookup] = model(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(got, results[True], atol=1e-4, rtol=0)
    # The reference with a float lookup is another model: the check above can tell.
    assert np.abs(got - results[False]).max() > 1e-3


def test_graph_without_adapters_has_no_lora_inputs(tiny_llama_bundle: Path) -> None:
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    weights = load_file(str(bundle.weights_path))
    plain = build_decoder(bundle.config, weights, BuildOptions())
    names = [i.name for i in plain.graph.input]
    assert not any(n.startswith("lora") for n in names)
    lora = build_decoder(bundle.config, weights, BuildOptions(lora_slots=3, lora_rank=4))
    assert {"lora_index", "lora_A.q_proj", "lora_B.down_proj"} <= {i.name for i in lora.graph.input}


@pytest.mark.parametrize("flavour", ["ort", "standard"])
def test_per_row_lora_slots_match_peft_mixed_batch(tiny_llama_bundle: Path, flavour: str) -> None:
    from peft import LoraConfig, get_peft_model

    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    c = bundle.config
    targets = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    rank, alpha = 4, 8
    base = tinyllm.load_torch_model(bundle).model
    torch.manual_seed(0)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    peft_model = get_peft_model(base, cfg, adapter_name="task1")
    peft_model.add_adapter("task2", cfg)
    peft_model.eval()
    ids = np.array([[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [5, 6, 7, 8]])
    with torch.no_grad():
        expected = peft_model(
            input_ids=torch.from_numpy(ids), adapter_names=["__base__", "task1", "task2", "task2"]
        ).logits
    # Stack the adapters: slot 0 = none, slot 1 = task1, slot 2 = task2; scale folded into B.
    stacked = {}
    for kind in targets:
        per_layer_a, per_layer_b = [], []
        for layer in range(c.num_hidden_layers):
            group = "mlp" if kind.endswith(("up_proj", "down_proj", "gate_proj")) else "self_attn"
            module = peft_model.base_model.model.model.layers[layer].get_submodule(
                f"{group}.{kind}"
            )
            d_in, d_out = module.in_features, module.out_features
            la, lb = np.zeros((3, d_in, rank), np.float32), np.zeros((3, rank, d_out), np.float32)
            for slot, name in ((1, "task1"), (2, "task2")):
                la[slot] = module.lora_A[name].weight.detach().numpy().T
                lb[slot] = module.lora_B[name].weight.detach().numpy().T * module.scaling[name]
            per_layer_a.append(la)
            per_layer_b.append(lb)
        a = np.stack(per_layer_a)
        stacked[f"lora_A.{kind}"], stacked[f"lora_B.{kind}"] = a, np.stack(per_layer_b)
    weights = load_file(str(bundle.weights_path))
    options = BuildOptions(
        flavour=flavour, all_logits=True, lora_slots=3, lora_rank=rank, lora_targets=tuple(targets)
    )
    graph = build_decoder(c, weights, options)
    feeds = {**stacked, "lora_index": np.array([0, 1, 2, 2])}
    got = run_graph(graph, c, ids, flavour, feeds)
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-5, rtol=0)
    # Rows 0 and 3 use different slots on the same input: the adapter changes the output.
    assert np.abs(got[0] - got[3]).max() > 1e-3
