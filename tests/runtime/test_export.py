"""Export: verified engines in a new bundle; failures leave nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tinyllm
from tinyllm.cli import main
from tinyllm.errors import ConfigError
from tinyllm.runtime import Engine, GenerationConfig
from tinyllm.runtime import verify as verify_module
from tinyllm.runtime.verify import VerificationError


def test_export_writes_a_child_bundle_with_a_verified_engine(
    exported: Path, tiny_llama_bundle: Path
) -> None:
    bundle = tinyllm.open_bundle(exported)
    assert set(bundle.manifest.engines) == {"onnx-cpu-fp32", "onnx-standard-fp32"}
    assert bundle.manifest.stage == "export"
    # Two exports: the standard engine's parent is the cpu-engine bundle, then the import.
    assert [r.stage for r in bundle.manifest.lineage] == ["export", "import"]
    assert bundle.manifest.lineage[1].hash == tinyllm.open_bundle(tiny_llama_bundle).hash
    table = json.loads((exported / "engines" / "onnx-cpu-fp32" / "verification.json").read_text())
    assert table["passed"] and len(table["checks"]) == 3
    assert all(c["steps"] == 17 and c["greedy_agreement"] == 1.0 for c in table["checks"])
    assert all(c["max_abs_err"] < 1e-3 for c in table["checks"])
    assert (
        "engines     onnx-cpu-fp32 (onnx-cpu), onnx-standard-fp32 (onnx-standard)"
        in tinyllm.inspect(exported).format()
    )


def test_failed_verification_leaves_no_engine(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot
) -> None:
    monkeypatch.setitem(verify_module.TOLERANCE, "fp32", -1.0)
    with pytest.raises(
        VerificationError, match="does not reproduce the model; nothing was written"
    ):
        tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "x.tllm")
    assert list(tmp_path.iterdir()) == []
    copy = tmp_path / "copy.tllm"
    shutil.copytree(tiny_llama_bundle, copy)
    before = snapshot(copy)
    with pytest.raises(VerificationError):
        tinyllm.export(copy, "onnx-cpu")  # in place: the original must survive
    assert snapshot(copy) == before and sorted(p.name for p in tmp_path.iterdir()) == ["copy.tllm"]


def test_in_place_int4_export_and_generation(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    copy = tmp_path / "small.tllm"
    shutil.copytree(tiny_llama_bundle, copy)
    parent_hash = tinyllm.open_bundle(copy).hash
    bundle, verification = tinyllm.export(copy, "onnx-cpu", quant="int4", block_size=32)
    assert bundle.path == copy and bundle.manifest.lineage[0].hash == parent_hash
    assert verification.passed and verification.precision == "int4"
    info = json.loads((copy / "engines" / "onnx-cpu-int4" / "engine.json").read_text())
    assert (info["precision"], info["block_size"]) == ("int4", 32)
    result = Engine.load(copy).generate(
        "hello", GenerationConfig(max_new_tokens=5, ignore_eos=True)
    )
    assert len(result[0].token_ids) == 5


def test_bad_export_options(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown target 'onnx-tpu'"):
        tinyllm.export(tiny_llama_bundle, "onnx-tpu", tmp_path / "a.tllm")
    with pytest.raises(ConfigError, match="accuracy_level is fixed at 4 for the standard"):
        tinyllm.export(
            tiny_llama_bundle, "onnx-standard", tmp_path / "a.tllm", quant="int4", accuracy_level=0
        )
    with pytest.raises(ConfigError, match="unknown quantization 'int3'"):
        tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "a.tllm", quant="int3")
    with pytest.raises(ConfigError, match="block_size must be a power of two"):
        tinyllm.export(
            tiny_llama_bundle, "onnx-cpu", tmp_path / "a.tllm", quant="int4", block_size=24
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_export_and_generate(
    exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.tllm"
    main(["export", str(exported), "--quant", "int8", "-o", str(out)])
    printed = capsys.readouterr().out
    assert "verification (int8" in printed and "PASSED" in printed and f"wrote {out}" in printed
    main(["generate", str(out), "hello", "--max-new-tokens", "4", "--engine", "onnx-cpu-int8"])
    assert capsys.readouterr().out.strip() != ""


@pytest.mark.parametrize(("target", "precision"), [("onnx-cuda", None), ("onnx-standard", "fp16")])
def test_fp16_engines_verify_on_the_cpu_provider(
    tiny_llama_bundle: Path, tmp_path: Path, target: str, precision: str | None
) -> None:
    bundle, verification = tinyllm.export(
        tiny_llama_bundle, target, tmp_path / "x.tllm", precision=precision
    )
    assert verification.passed and verification.precision == "fp16"
    assert all(c.max_abs_err < 0.25 for c in verification.checks)
    engine = Engine.load(bundle.path)
    assert engine.info.float_dtype == "float16"
    assert (
        len(
            engine.generate("hello", GenerationConfig(max_new_tokens=3, ignore_eos=True))[
                0
            ].token_ids
        )
        == 3
    )


@pytest.mark.gpu
def test_cuda_engine_matches_cpu_tokens(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cuda", tmp_path / "gpu.tllm")
    config = GenerationConfig(max_new_tokens=8, ignore_eos=True)
    gpu = Engine.load(bundle.path, device="cuda").generate("hello there", config)[0].token_ids
    cpu = Engine.load(bundle.path, device="cpu").generate("hello there", config)[0].token_ids
    assert gpu == cpu


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lora_slots": -1}, "lora_slots must be >= 0"),
        ({"lora_slots": 3, "lora_rank": 0}, "lora_rank must be >= 1"),
        ({"lora_slots": 3, "lora_rank": -2}, "lora_rank must be >= 1"),
        ({"lora_slots": 0, "lora_rank": -1}, "lora_rank must be >= 1"),
        ({"max_seq_len": 0}, "max_seq_len must be >= 1"),
        ({"max_seq_len": -5}, "max_seq_len must be >= 1"),
        ({"max_seq_len": 4096}, "above the model's context of 512 tokens"),
    ],
)
def test_bad_engine_shapes_are_config_errors(
    tiny_llama_bundle: Path, tmp_path: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "a.tllm", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--lora-slots", "--lora-rank", "--max-seq-len"])
def test_cli_bad_engine_shape_is_a_one_line_error(
    tiny_llama_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    args = ["export", str(tiny_llama_bundle), "-o", str(tmp_path / "a.tllm"), option, "-1"]
    if option == "--lora-rank":
        args += ["--lora-slots", "2"]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # no traceback
    assert last.startswith("error: ") and "must be >= " in last


def test_a_tokenizer_that_encodes_the_prompts_to_nothing_still_verifies(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    loaded = tinyllm.load_torch_model(tiny_llama_bundle)
    folder = tmp_path / "hf"
    loaded.model.save_pretrained(folder)
    # Placeholder tokens only, no unknown token: every verification prompt encodes to [].
    vocab = {f"<p{i}>": i for i in range(loaded.config.vocab_size)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    assert tok.encode(verify_module.PROMPTS[0]).ids == []
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<p1>", eos_token="<p2>", pad_token="<p0>"
    )
    fast.save_pretrained(folder)
    bundle = tinyllm.import_model(str(folder), tmp_path / "p.tllm")
    _, verification = tinyllm.export(bundle.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    assert verification.passed, verification.format()
    assert all("no tokens for prompt" in c.prompt for c in verification.checks)


def test_quantized_embedding_export_is_verified(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    """Opt-in: the tied lookup reads the lm_head's int4 blocks; the export verifies it
    against the model whose table is those blocks dequantized, and the file shrinks."""
    import onnx

    sizes = {}
    for lookup in (False, True):
        bundle, _ = tinyllm.export(
            tiny_llama_bundle,
            "onnx-cpu",
            tmp_path / f"e{lookup}.tllm",
            quant="int4",
            max_seq_len=64,
            quantized_embedding=lookup,
        )
        folder = bundle.path / "engines" / "onnx-cpu-int4"
        graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
        assert ("GatherBlockQuantized" in {n.op_type for n in graph.node}) == lookup
        names = {i.name for i in graph.initializer}
        assert ("model.embed_tokens.weight" in names) != lookup
        sizes[lookup] = (folder / "model.onnx.data").stat().st_size
    assert sizes[True] < sizes[False]
