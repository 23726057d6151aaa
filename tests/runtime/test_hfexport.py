"""export --target hf (tinyllm.runtime.hfexport): transformers + peft load the float export
with the bundle's logits, the GPTQ export unpacks to the bundle's numbers bit for bit, and
a GPTQ loader (GPT-QModel, where installed) computes the dequantized bundle's logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import load_file

import tinyllm
from tinyllm.adapters import LoraAdapter, adapter_shapes
from tinyllm.errors import BundleExistsError, ConfigError
from tinyllm.models import adapter_applied, load_model
from tinyllm.quantformat import read_weights
from tinyllm.runtime import hfexport
from tinyllm.runtime.gptqlayout import GPTQLayoutError

PROMPT_IDS = [[1, 17, 42, 99, 260, 311, 7, 480, 12]]
TASKS = ("sentiment", "booking")


def make_adapter(config: Any, rank: int, targets: tuple[str, ...], seed: int) -> LoraAdapter:
    """Random A and B, large enough to move the logits well past any tolerance here."""
    rng = np.random.default_rng(seed)
    tensors = {
        k: rng.standard_normal(s).astype(np.float32) * 0.15
        for k, s in adapter_shapes(config, rank, targets).items()
    }
    return LoraAdapter(rank=rank, alpha=2.0 * rank, targets=targets, tensors=tensors)


def with_adapters(source: Path, out: Path) -> Path:
    """``source`` plus tasks sentiment (rank 2) and booking (rank 4) with adapters."""
    suite = tinyllm.api.load_tasks()
    config = tinyllm.open_bundle(source).config
    adapters = {
        "sentiment": make_adapter(config, 2, ("q_proj", "v_proj", "down_proj"), 0),
        "booking": make_adapter(config, 4, ("up_proj", "o_proj"), 1),
    }
    tasks = [suite.task(n) for n in TASKS]
    return tinyllm.api.add_tasks(source, out, tasks, adapters).path


@pytest.fixture(scope="module")
def adapted(
    tiny_llama_bundle: Path, tiny_qwen2_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """tiny-llama (tied head) and tiny-qwen2 (biases), each with two task adapters."""
    folder = tmp_path_factory.mktemp("adapted")
    return {
        "llama": with_adapters(tiny_llama_bundle, folder / "llama.tllm"),
        "qwen2": with_adapters(tiny_qwen2_bundle, folder / "qwen2.tllm"),
    }


@pytest.fixture(scope="module")
def quantized(adapted: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 with adapters, int4 RTN (asymmetric, group 32), adapters kept separate."""
    out = tmp_path_factory.mktemp("quantized") / "int4.tllm"
    bundle, _ = tinyllm.api.compress(
        adapted["qwen2"], out, quant="int4-rtn", names=["sentiment"], progress=False
    )
    return bundle.path


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        result: torch.Tensor = model(torch.tensor(PROMPT_IDS)).logits
    return result


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_transformers_and_peft_reproduce_the_bundle(
    family: str, adapted: dict[str, Path], tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    bundle = tinyllm.open_bundle(adapted[family])
    result = tinyllm.api.export_hf(bundle.path, tmp_path / "hf")
    assert sorted(result.adapters) == sorted(TASKS) and result.gptq_format is None
    reference = load_model(bundle, "float32").model
    hf = AutoModelForCausalLM.from_pretrained(str(result.path), dtype=torch.float32)
    torch.testing.assert_close(logits(hf), logits(reference), rtol=0, atol=1e-6)

    peft_model = PeftModel.from_pretrained(hf, str(result.adapters["sentiment"]), "sentiment")
    peft_model.load_adapter(str(result.adapters["booking"]), "booking")
    got = {}
    for task in TASKS:
        peft_model.set_adapter(task)
        got[task] = logits(peft_model)
        with adapter_applied(reference, bundle.adapter(task)):
            want = logits(reference)
        torch.testing.assert_close(got[task], want, rtol=0, atol=1e-4)
    # The tolerance tells the adapters apart: each is far from the other and from the base.
    assert (got["sentiment"] - got["booking"]).abs().max() > 1e-2
    assert (got["sentiment"] - logits(reference)).abs().max() > 1e-2


def test_folder_layout_and_configs(adapted: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tinyllm.tokenizer import load_hf_tokenizer

    bundle = tinyllm.open_bundle(adapted["llama"])
    out = tinyllm.api.export_hf(bundle.path, tmp_path / "hf").path
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert "quantize_config.json" not in names
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == bundle.config.eos_token_id
    adapter = json.loads((out / "adapters/booking/adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert adapter["target_modules"] == ["o_proj", "up_proj"] and adapter["use_rslora"] is False
    weights = load_file(str(out / "adapters/booking/adapter_model.safetensors"))
    assert "base_model.model.model.layers.1.mlp.up_proj.lora_B.weight" in weights
    assert "lm_head.weight" not in load_file(str(out / "model.safetensors"))  # tied
    tasks = json.loads((out / "tasks.json").read_text())
    assert {name: t["adapter"] for name, t in tasks["tasks"].items()} == {t: t for t in TASKS}
    assert "{input}" in tasks["tasks"]["sentiment"]["prompt"]
    text = "The room was spotless."
    want = load_hf_tokenizer(bundle.tokenizer_dir)(text)["input_ids"]
    assert AutoTokenizer.from_pretrained(str(out))(text)["input_ids"] == want
    assert all(oct(p.stat().st_mode)[-3:] == "644" for p in out.rglob("*") if p.is_file())


def reference_codes(qweight: np.ndarray, bits: int) -> np.ndarray:
    """Codes [N, K] from qweight [K * bits / 32, N], read field by field."""
    per, mask = 32 // bits, (1 << bits) - 1
    words = qweight.view(np.uint32).astype(np.int64)
    fields = [(words >> (bits * j)) & mask for j in range(per)]  # each [K / per, N]
    return np.stack(fields, axis=1).reshape(-1, qweight.shape[1]).T


def reference_zeros(qzeros: np.ndarray, bits: int) -> np.ndarray:
    """Zero points [N, G] from v1 qzeros [G, N * bits / 32]: each field plus one."""
    return reference_codes(np.ascontiguousarray(qzeros.T), bits).T + 1


def check_gptq_folder(out: Path, bundle: Any) -> int:
    """Compare every packed weight of ``bundle`` with the folder's GPTQ tensors; count them."""
    spec = bundle.quant_spec()
    written = load_file(str(out / "model.safetensors"))
    packed, rest = read_weights(bundle)
    for name, p in packed.items():
        prefix = name.removesuffix(".weight")
        assert name not in written
        codes = p.codes()[:, : p.in_features].astype(np.int64)
        assert np.array_equal(reference_codes(written[f"{prefix}.qweight"], spec.bits), codes)
        zeros = reference_zeros(written[f"{prefix}.qzeros"], spec.bits)
        assert np.array_equal(zeros, p.zeros().astype(np.int64)), f"{name} zero points"
        assert written[f"{prefix}.scales"].T.tobytes() == p.scales.tobytes(), f"{name} scales"
    for name, value in rest.items():
        assert written[name].tobytes() == value.tobytes()
    return len(packed)


def test_gptq_export_unpacks_to_the_bundle_numbers_bit_for_bit(
    quantized: Path, tmp_path: Path
) -> None:
    bundle = tinyllm.open_bundle(quantized)
    result = tinyllm.api.export_hf(quantized, tmp_path / "hf")
    assert result.gptq_format == "gptq"
    assert check_gptq_folder(result.path, bundle) == 7 * bundle.config.num_hidden_layers
    config = json.loads((result.path / "config.json").read_text())
    quant = config["quantization_config"]
    assert quant["quant_method"] == "gptq" and quant["checkpoint_format"] == "gptq"
    assert (quant["bits"], quant["group_size"], quant["sym"], quant["desc_act"]) == (
        4,
        32,
        False,
        False,
    )
    assert json.loads((result.path / "quantize_config.json").read_text()) == quant
    assert sorted(result.adapters) == sorted(TASKS)


def test_a_corrupted_gptq_file_fails_the_bit_check(quantized: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    bundle = tinyllm.open_bundle(quantized)
    out = tinyllm.api.export_hf(quantized, tmp_path / "hf").path
    tensors = load_file(str(out / "model.safetensors"))
    name = "model.layers.1.mlp.up_proj.qweight"
    tensors[name] = tensors[name].copy()
    tensors[name][3, 7] ^= 1 << 9  # one bit of one code
    save_file(tensors, str(out / "model.safetensors"), {"format": "pt"})
    with pytest.raises(AssertionError):
        check_gptq_folder(out, bundle)


def test_a_wrong_packing_is_caught_before_anything_is_written(
    quantized: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = hfexport.to_gptq

    def off_by_one(name: str, p: Any, fmt: Any) -> dict[str, np.ndarray]:
        tensors = real(name, p, fmt)
        tensors[f"{name}.qzeros"] = tensors[f"{name}.qzeros"] + 1  # the v1/v2 mix-up
        return tensors

    monkeypatch.setattr(hfexport, "to_gptq", off_by_one)
    with pytest.raises(GPTQLayoutError, match="zero points"):
        tinyllm.api.export_hf(quantized, tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []  # no folder, no staging left behind


def test_gptq_v2_stores_zero_points_as_they_are(quantized: Path, tmp_path: Path) -> None:
    v1 = tinyllm.api.export_hf(quantized, tmp_path / "v1").path
    v2 = tinyllm.api.export_hf(quantized, tmp_path / "v2", gptq_format="gptq_v2").path
    name = "model.layers.0.self_attn.q_proj.qzeros"
    a, b = load_file(str(v1 / "model.safetensors")), load_file(str(v2 / "model.safetensors"))
    # Every 4-bit field one higher: no field of v1 is 15, so the words differ by 0x11111111.
    assert np.array_equal(
        b[name].view(np.uint32) - a[name].view(np.uint32), 0x11111111 + 0 * a[name]
    )
    assert (
        json.loads((v2 / "config.json").read_text())["quantization_config"]["checkpoint_format"]
        == "gptq_v2"
    )


def test_bad_outputs_and_targets_are_refused(adapted: dict[str, Path], tmp_path: Path) -> None:
    source = adapted["llama"]
    with pytest.raises(ConfigError, match="inside the bundle"):
        tinyllm.api.export_hf(source, source / "hf")
    (tmp_path / "taken").mkdir()
    with pytest.raises(BundleExistsError, match="already exists"):
        tinyllm.api.export_hf(source, tmp_path / "taken")
    assert tinyllm.api.export_hf(source, tmp_path / "taken", overwrite=True).adapters
    with pytest.raises(ConfigError, match="unknown GPTQ checkpoint format"):
        tinyllm.api.export_hf(source, tmp_path / "x", gptq_format="marlin")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="export_hf"):
        tinyllm.export(source, "hf", tmp_path / "y.tllm")


def test_cli_target_hf(adapted: dict[str, Path], tmp_path: Path) -> None:
    from tinyllm.cli import cli

    runner = CliRunner()
    missing = runner.invoke(cli, ["export", str(adapted["llama"]), "--target", "hf"])
    assert missing.exit_code != 0 and "--out" in missing.output
    out = tmp_path / "hf"
    ok = runner.invoke(cli, ["export", str(adapted["llama"]), "--target", "hf", "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "float weights" in ok.output and (out / "adapters/sentiment").is_dir()


def test_merged_adapters_are_not_exported_again(adapted: dict[str, Path], tmp_path: Path) -> None:
    merged, _ = tinyllm.api.compress(
        adapted["qwen2"],
        tmp_path / "merged.tllm",
        quant="int8-rtn",
        names=["booking"],
        lora="merged",
        symmetric=True,
        progress=False,
    )
    result = tinyllm.api.export_hf(merged.path, tmp_path / "hf")
    assert result.adapters == {} and not (result.path / "adapters").exists()
    quant = json.loads((result.path / "config.json").read_text())["quantization_config"]
    assert (quant["bits"], quant["sym"]) == (8, True)
    assert check_gptq_folder(result.path, merged) == 7 * merged.config.num_hidden_layers


GPTQMODEL_CHECK = """
import json, sys, torch
import numpy as np
from transformers import AutoModelForCausalLM, GPTQConfig
from peft import PeftModel
import tinyllm
from tinyllm.models import adapter_applied, load_model
from tinyllm.quantformat import read_weights
folder, bundle_path, task = sys.argv[1:4]
ids = torch.tensor(json.loads(sys.argv[4]))
bundle = tinyllm.open_bundle(bundle_path)
config = GPTQConfig(bits=bundle.quant_spec().bits, backend="torch")
model = AutoModelForCausalLM.from_pretrained(
    folder, dtype=torch.float32, device_map="cpu", quantization_config=config)
kind = type(model.model.layers[0].mlp.up_proj).__name__
reference = load_model(bundle, "float32").model
with torch.no_grad():
    base = model(ids).logits
    want = reference(ids).logits
    with adapter_applied(reference, bundle.adapter(task)):
        want_task = reference(ids).logits
    # The v1/v2 mix-up: every zero point one higher, so W - scale in every group.
    params = dict(reference.named_parameters())
    packed, _ = read_weights(bundle)
    for name, p in packed.items():
        shift = p.scales.repeat(p.block_size, axis=1)[:, : p.in_features]
        params[name].sub_(torch.from_numpy(np.ascontiguousarray(shift)))
    off = reference(ids).logits
    peft = PeftModel.from_pretrained(model, folder + "/adapters/" + task)
    got_task = peft(ids).logits
print(json.dumps({
    "kind": kind,
    "base": (base - want).abs().max().item(),
    "task": (got_task - want_task).abs().max().item(),
    "off_by_one": (base - off).abs().max().item(),
    "scale": want.abs().max().item(),
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_gptqmodel_loads_the_export(quantized: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "gptqmodel",
        reason="GPT-QModel is not installed: it needs torch>=2.14.1 while tinyllm pins "
        "2.13.0, so no extra installs it (docs/deploy.md says how this test was run)",
    )
    out = tinyllm.api.export_hf(quantized, tmp_path / "hf").path
    env = {**os.environ, "TORCHDYNAMO_DISABLE": "1"}  # its CPU kernel would torch.compile
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            GPTQMODEL_CHECK,
            str(out),
            str(quantized),
            "sentiment",
            json.dumps(PROMPT_IDS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print("GPT-QModel vs the dequantized bundle:", result)  # shown with pytest -s
    # GPT-QModel keeps scales in float16: ~1e-3 relative; the zero-point mix-up is far off.
    tolerance = 5e-3 * result["scale"]
    assert result["base"] < tolerance and result["task"] < tolerance, result
    assert result["off_by_one"] > 10 * tolerance, result
