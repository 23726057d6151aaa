"""Model sources: presets, HF folders, GGUF files; round trips through a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tinyllm
from tinyllm.errors import ModelSourceError, UnknownPresetError, UnsupportedModelError
from tinyllm.models import build_model, hf_config, load_gguf, load_preset, load_source
from tinyllm.presets import PRESETS, smollm2_gguf_path
from tinyllm.tokenizer import MODEL_INPUT_NAMES

PROMPT = "Book a table for four people in Lisbon on Friday evening."


def logits(model: torch.nn.Module, tokenizer, text: str = PROMPT) -> torch.Tensor:
    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen2", "qwen2.5-0.5b-shape"])
def test_hf_config_matches_bundle_weight_shapes(name: str) -> None:
    config = PRESETS[name].config
    assert config is not None
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config(config))
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = config.weight_shapes()
    assert {k: state[k] for k in expected} == expected
    assert model.num_parameters() == config.num_parameters()


def test_random_presets_are_deterministic_with_a_chatml_tokenizer() -> None:
    a, b = load_preset("tiny-qwen2"), load_preset("tiny-qwen2")
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    tok = a.tokenizer
    assert tok.model_input_names == MODEL_INPUT_NAMES
    assert [tok.convert_ids_to_tokens(i) for i in range(3)] == [
        "<|endoftext|>",
        "<|im_start|>",
        "<|im_end|>",
    ]
    assert a.config.eos_token_id == tok.eos_token_id
    assert len(tok) <= a.config.vocab_size
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(tok(PROMPT)["input_ids"]) == PROMPT


def test_hf_folder_round_trip_gives_identical_logits(tmp_path: Path) -> None:
    source = load_preset("tiny-qwen2")
    folder = tmp_path / "hf-model"
    source.model.save_pretrained(folder)
    source.tokenizer.save_pretrained(folder)
    bundle = tinyllm.import_model(str(folder), tmp_path / "from-hf.tllm")
    assert bundle.manifest.source == {"kind": "hf", "ref": str(folder)}
    assert "lm_head.weight" in bundle.tensor_infos()  # tiny-qwen2 does not tie
    loaded = tinyllm.load_torch_model(bundle.path)
    expected = logits(source.model, source.tokenizer)
    assert torch.equal(logits(loaded.model, loaded.tokenizer), expected)


def test_bfloat16_import_stores_bfloat16(tmp_path: Path) -> None:
    bundle = tinyllm.import_model("tiny-llama", tmp_path / "bf16.tllm", dtype="bfloat16")
    assert {i.dtype for i in bundle.tensor_infos().values()} == {"BF16"}
    loaded = tinyllm.load_torch_model(bundle)
    assert loaded.model.dtype == torch.bfloat16


@pytest.mark.slow
def test_gguf_round_trip_gives_identical_logits(smollm2_bundle: Path) -> None:
    bundle = tinyllm.Bundle.open(smollm2_bundle)
    report = tinyllm.inspect(bundle.path)
    assert report.parameters == 134_515_008
    assert (report.model["num_hidden_layers"], report.model["vocab_size"]) == (30, 49152)
    reference = load_gguf(smollm2_gguf_path(), "float32")
    loaded = tinyllm.load_torch_model(bundle)
    expected = logits(reference.model, reference.tokenizer)
    got = logits(loaded.model, loaded.tokenizer)
    assert torch.equal(got, expected)
    # The real model answers sensibly: the next token after this prompt is " Paris".
    batch = loaded.tokenizer("The capital of France is", return_tensors="pt")
    out = loaded.model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(out[0])


def test_unknown_preset_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UnknownPresetError, match=r"unknown preset 'llama-70b'.*smollm2-135m"):
        tinyllm.import_model("llama-70b", tmp_path / "x.tllm")
    assert not (tmp_path / "x.tllm").exists()


def test_bad_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="no such file or folder"):
        load_source(str(tmp_path / "missing.gguf"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelSourceError, match=r"must be a .gguf file"):
        load_source(str(tmp_path / "weights.bin"))
    (tmp_path / "m.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ModelSourceError, match=r"folder has no config.json; to import a GGUF"):
        load_source(str(tmp_path))
    with pytest.raises(ModelSourceError, match="not a readable GGUF file"):
        load_source(str(tmp_path / "m.gguf"))


def test_gguf_of_unsupported_architecture(tmp_path: Path) -> None:
    import gguf

    path = tmp_path / "tiny-gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = tmp_path / "x.tllm"
    with pytest.raises(UnsupportedModelError, match="GGUF architecture 'gpt2' is not supported"):
        tinyllm.import_model(str(path), out)
    assert not out.exists()


def test_hf_folder_of_unsupported_architecture(tmp_path: Path) -> None:
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1}))
    with pytest.raises(UnsupportedModelError, match="architecture 'gpt2' is not supported"):
        load_source(str(folder))


def test_unsupported_llama_features_are_named() -> None:
    from transformers import LlamaConfig

    base = hf_config(PRESETS["tiny-llama"].config)  # type: ignore[arg-type]
    from tinyllm.models import config_from_hf

    scaled = LlamaConfig(
        **{
            **base.to_dict(),
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 1e4,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        }
    )
    with pytest.raises(UnsupportedModelError, match="RoPE scaling 'llama3'"):
        config_from_hf(scaled, "m")
    with pytest.raises(UnsupportedModelError, match="hidden_act 'gelu'"):
        config_from_hf(LlamaConfig(**{**base.to_dict(), "hidden_act": "gelu"}), "m")


def test_build_model_seed_controls_weights() -> None:
    config = PRESETS["tiny-llama"].config
    assert config is not None
    a, b = build_model(config, seed=3), build_model(config, seed=4)
    assert not torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
