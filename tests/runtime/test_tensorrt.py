"""TensorRT export: profiles, EP options, the build record and its checks (CPU), and
engine parity on a GPU with ONNX Runtime's TensorRT EP (@pytest.mark.gpu)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinyllm.config import ModelConfig
from tinyllm.errors import BundleError, ConfigError, MissingDependencyError, TinyLLMError
from tinyllm.presets import PRESETS
from tinyllm.runtime import GenerationConfig
from tinyllm.runtime import tensorrt as trt
from tinyllm.runtime.exportoptions import ExportOptions

CONFIG = PRESETS["tiny-llama"].config  # the dimensions the tests' tiny models have
assert CONFIG is not None
RECORD = trt.BuildRecord(
    tensorrt_version="10.3.0",
    cuda_version="12.4",
    gpu_name="NVIDIA L4",
    onnxruntime_version="1.31.1",
    precision="fp16",
    max_batch=4,
    max_seq_len=128,
    lora_slots=0,
    context_model=trt.CONTEXT_MODEL,
    engine_files=("model_ctx_trt.engine",),
    profile_min="a",
    profile_opt="b",
    profile_max="c",
)


def _parse(shapes: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for part in shapes.split(","):
        name, dims = part.split(":")
        out[name] = tuple(int(d) for d in dims.split("x"))
    return out


def test_profiles_cover_batch_and_sequence_range() -> None:
    low, opt, high = (_parse(s) for s in trt.profile_shapes(CONFIG, 4, 128))
    expected = {"input_ids", "logits_index", "position_ids", "attention_mask"}
    expected |= {f"past_{k}.{i}" for k in ("key", "value") for i in range(2)}
    assert set(low) == set(opt) == set(high) == expected
    assert low["input_ids"] == (1, 1) and high["input_ids"] == (4, 128)
    assert low["past_key.0"] == (1, 2, 0, 32) and high["past_value.1"] == (4, 2, 127, 32)
    assert opt["input_ids"] == (4, 1) and opt["attention_mask"] == (4, 65)
    assert high["attention_mask"] == (4, 128)
    for name in expected:  # every dimension min <= opt <= max
        assert all(a <= b <= c for a, b, c in zip(low[name], opt[name], high[name], strict=True))
    lora = _parse(trt.profile_shapes(CONFIG, 4, 128, lora_slots=3)[2])
    assert lora["lora_index"] == (4,)


def test_profiles_reject_empty_ranges() -> None:
    with pytest.raises(TinyLLMError, match=r"max_batch >= 1"):
        trt.profile_shapes(CONFIG, 0, 128)
    with pytest.raises(TinyLLMError, match=r"max_seq_len >= 2"):
        trt.profile_shapes(CONFIG, 1, 1)


def test_ep_options(tmp_path: Path) -> None:
    shapes = ("l", "o", "h")
    dump = trt.ep_options(tmp_path, "int4", shapes, dump=True)
    assert dump["trt_fp16_enable"] == "True"
    assert (dump["trt_profile_min_shapes"], dump["trt_profile_max_shapes"]) == ("l", "h")
    assert dump["trt_dump_ep_context_model"] == "True"
    assert dump["trt_ep_context_file_path"] == str(tmp_path / trt.CONTEXT_MODEL)
    assert dump["trt_ep_context_embed_mode"] == "0"
    assert dump["trt_engine_cache_enable"] == "True"
    load = trt.ep_options(tmp_path, "fp32", shapes, dump=False)
    assert load["trt_fp16_enable"] == "False" and "trt_dump_ep_context_model" not in load
    assert all(isinstance(v, str) for v in {**dump, **load}.values())


def test_record_round_trip_and_bad_records(tmp_path: Path) -> None:
    trt.write_record(tmp_path, RECORD)
    assert trt.read_record(tmp_path) == RECORD
    data = json.loads((tmp_path / trt.RECORD_FILE).read_text())
    del data["gpu_name"]
    (tmp_path / trt.RECORD_FILE).write_text(json.dumps(data))
    with pytest.raises(BundleError, match=r"not a TensorRT build record.*rebuild"):
        trt.read_record(tmp_path)
    (tmp_path / trt.RECORD_FILE).write_text("{")
    with pytest.raises(BundleError, match=r"rebuild"):
        trt.read_record(tmp_path)
    with pytest.raises(BundleError, match=r"missing; rebuild"):
        trt.read_record(tmp_path / "none")


def test_check_record_passes_on_the_same_machine_and_fails_on_another() -> None:
    trt.check_record(RECORD, "NVIDIA L4", "10.3.0")  # same GPU and TensorRT: no error
    with pytest.raises(trt.TensorRTMismatchError, match=r"GPU 'NVIDIA L4'.*'NVIDIA H100.*rebuild"):
        trt.check_record(RECORD, "NVIDIA H100 80GB HBM3", "10.3.0")
    with pytest.raises(trt.TensorRTMismatchError, match=r"TensorRT 10.3.0, this machine has 10.8"):
        trt.check_record(RECORD, "NVIDIA L4", "10.8.0")
    fake = replace(RECORD, gpu_name="fake GPU")
    with pytest.raises(trt.TensorRTMismatchError, match=r"--target tensorrt"):
        trt.check_record(fake, "NVIDIA L4", "10.3.0")


def test_lora_rejection_says_what_and_the_fallback() -> None:
    error = trt.lora_rejected(RuntimeError("GatherND: unsupported"), 4)
    text = str(error)
    assert "4 adapter slots" in text and "GatherND: unsupported" in text
    assert "--merge-adapter" in text


def test_fix_logits_index_declares_batch_rank() -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["logits_index"], ["y"])],
        "g",
        [helper.make_tensor_value_info("logits_index", TensorProto.INT64, None)],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch"])],
    )
    model = helper.make_model(graph)
    trt.fix_logits_index(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch"]
    other = helper.make_model(
        helper.make_graph([], "g", [], [helper.make_tensor_value_info("y", 1, None)])
    )
    with pytest.raises(TinyLLMError, match=r"no logits_index"):
        trt.fix_logits_index(other)
    onnx.checker.check_model(model)


def test_merged_weights_folds_one_adapter_and_refuses_several(random_adapter: Any) -> None:
    config = CONFIG
    adapter = random_adapter(config, rank=4, targets=("q_proj",), seed=0)
    weights = {
        f"model.layers.{i}.self_attn.q_proj.weight": np.zeros((128, 128), np.float32)
        for i in range(2)
    }
    merged = trt.merged_weights(weights, config, {"sentiment": adapter})
    assert np.abs(merged["model.layers.0.self_attn.q_proj.weight"]).max() > 0
    with pytest.raises(ConfigError, match=r"has 2 .*one bundle per task"):
        trt.merged_weights(weights, config, {"a": adapter, "b": adapter})


def test_merge_adapter_takes_no_slots() -> None:
    with pytest.raises(ConfigError, match=r"no LoRA slots"):
        ExportOptions("onnx-standard", merge_adapter=True, lora_slots=2, lora_rank=4).check(CONFIG)
    with pytest.raises(ConfigError, match=r"max_batch must be >= 1"):
        ExportOptions("onnx-standard", max_batch=0).check(CONFIG)


def test_export_tensorrt_without_tensorrt_names_each_missing_piece(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    import onnxruntime

    import tinyllm

    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has ONNX Runtime's TensorRT EP")
    with pytest.raises(MissingDependencyError) as info:
        tinyllm.export(tiny_llama_bundle, "tensorrt", tmp_path / "t.tllm", max_seq_len=64)
    text = str(info.value)
    assert "no TensorrtExecutionProvider in ONNX Runtime" in text
    assert "no TensorRT library (libnvinfer) found" in text
    assert "tinyllm doctor" in text
    assert not (tmp_path / "t.tllm").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("quant", [None, "int8", "int4"])
def test_tensorrt_engine_greedy_tokens_match_the_cpu_engine(
    tiny_llama_bundle: Path, tmp_path: Path, quant: str | None
) -> None:
    import onnxruntime

    import tinyllm

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs ONNX Runtime's TensorrtExecutionProvider (onnxruntime-gpu + TensorRT)")
    # The CPU reference: the same standard graph at fp32 (fp16 on TensorRT: within tolerance
    # means equal greedy tokens over a short run).
    ref, _ = tinyllm.export(
        tiny_llama_bundle, "onnx-standard", tmp_path / "cpu.tllm", quant=quant, max_seq_len=128
    )
    gpu, _ = tinyllm.export(
        ref.path, "tensorrt", tmp_path / "trt.tllm", quant=quant, max_seq_len=128, max_batch=4
    )
    folder = gpu.path / "engines" / f"tensorrt-{quant or 'fp16'}"
    record = trt.read_record(folder)
    assert (folder / record.context_model).is_file() and record.engine_files
    cpu = tinyllm.Engine.load(ref.path, device="cpu")
    engine = tinyllm.Engine.load(gpu.path, device="tensorrt")
    greedy = GenerationConfig(max_new_tokens=16, ignore_eos=True)
    prompts = ["The quick brown fox", "Once upon a time"]
    want = [g.token_ids for g in cpu.generate(prompts, greedy)]
    assert [g.token_ids for g in engine.generate(prompts, greedy)] == want


def test_export_prepares_and_verifies_the_graph_before_the_build(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything but the TensorRT build, on the CPU: the builder is replaced by a recorder
    (the real one needs a GPU), so the graph TensorRT would get is checked here."""
    import onnx

    import tinyllm
    from tinyllm.runtime import export, exportoptions

    calls: list[dict[str, object]] = []

    def fake_build(folder: Path, model: str, config: ModelConfig, **kw: object) -> None:
        graph = onnx.load(str(folder / model), load_external_data=False).graph
        index = next(i for i in graph.input if i.name == "logits_index")
        calls.append({"dims": [d.dim_param for d in index.type.tensor_type.shape.dim], **kw})

    monkeypatch.setattr(exportoptions, "require_tensorrt", lambda: None)
    monkeypatch.setattr(export, "build_engine", fake_build)
    bundle, verification = tinyllm.export(
        tiny_llama_bundle, "tensorrt", tmp_path / "t.tllm", quant="int4", max_seq_len=64,
        max_batch=3,
    )  # fmt: skip
    assert verification.passed
    assert calls == [
        {"dims": ["batch"], "precision": "int4", "max_batch": 3, "max_seq_len": 64, "lora_slots": 0}
    ]
    assert "tensorrt-int4" in bundle.manifest.engines


def test_merge_adapter_export_verifies_against_the_merged_model(
    tiny_qwen2_bundle: Path, tmp_path: Path, random_adapter: Any
) -> None:
    """The fallback path on the CPU (onnx-standard, the graph TensorRT would build): the
    engine computes with the adapter folded in, and verification checks it against it."""
    import tinyllm

    suite = tinyllm.api.load_tasks()
    config = tinyllm.open_bundle(tiny_qwen2_bundle).config
    one = {"sentiment": random_adapter(config, 2, ("q_proj", "v_proj"), 0)}
    child = tinyllm.api.add_tasks(
        tiny_qwen2_bundle, tmp_path / "one.tllm", [suite.task("sentiment")], one
    )
    merged, verification = tinyllm.export(
        child.path, "onnx-standard", tmp_path / "m.tllm", max_seq_len=64, merge_adapter=True
    )
    assert verification.passed
    info = json.loads((merged.path / "engines/onnx-standard-fp32/engine.json").read_text())
    assert info["lora_slots"] == 0
    base, _ = tinyllm.export(child.path, "onnx-standard", tmp_path / "b.tllm", max_seq_len=64)
    data = "engines/onnx-standard-fp32/model.onnx.data"
    merged_bytes = (merged.path / data).read_bytes()
    base_bytes = (base.path / data).read_bytes()
    assert len(merged_bytes) == len(base_bytes) and merged_bytes != base_bytes  # folded in
    # Serving it is not built: the bundle still lists the task's adapter, and Engine.load
    # refuses a task adapter on an engine without slots (docs/gpu.md says so).
    engine = tinyllm.Engine.load(merged.path)
    with pytest.raises(ConfigError, match="no LoRA slots"):
        engine.run("sentiment", "The room was spotless")
