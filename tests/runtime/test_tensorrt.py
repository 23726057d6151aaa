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
    # Dumping: no cache path, so the EP names the engine file relative to the context
    # model (an absolute one would bake the staging folder into the bundle).
    assert "trt_engine_cache_path" not in dump
    load = trt.ep_options(tmp_path, "fp32", shapes, dump=False)
    assert load["trt_fp16_enable"] == "False" and "trt_dump_ep_context_model" not in load
    assert load["trt_engine_cache_path"] == str(tmp_path)
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


def test_the_context_model_gets_the_graphs_stamps(tmp_path: Path) -> None:
    """load checks engine.json against the ``tinyllm.*`` metadata of the model it opens:
    for a TensorRT engine that is the EPContext model, so the build copies them there."""
    import onnx
    from onnx import helper

    from tinyllm.runtime import export

    def model(props: dict[str, str]) -> onnx.ModelProto:
        out = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
        m = helper.make_model(helper.make_graph([], "g", [], [out]))
        helper.set_model_props(m, props)
        return m

    stamps = {"tinyllm.precision": "fp16", "tinyllm.merged_adapter": "sentiment"}
    onnx.save(model({**stamps, "producer": "x"}), str(tmp_path / "model.onnx"))
    onnx.save(model({"ep": "kept"}), str(tmp_path / trt.CONTEXT_MODEL))
    export.copy_stamps(tmp_path / "model.onnx", tmp_path / trt.CONTEXT_MODEL)
    ctx = onnx.load(str(tmp_path / trt.CONTEXT_MODEL))
    assert {p.key: p.value for p in ctx.metadata_props} == {**stamps, "ep": "kept"}


def test_merge_adapter_takes_no_slots() -> None:
    with pytest.raises(ConfigError, match=r"no LoRA slots"):
        ExportOptions("onnx-standard", merge_adapter="sentiment", lora_slots=2, lora_rank=4).check(
            CONFIG
        )
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
    (the real one needs a GPU) that writes trt.json as if built on an L4, so the graph
    TensorRT would get and the checks of loading it are tested here."""
    import onnx
    import onnxruntime

    import tinyllm
    from tinyllm.runtime import export, exportoptions, targets

    calls: list[dict[str, object]] = []

    def fake_build(folder: Path, model: str, config: ModelConfig, **kw: object) -> None:
        graph = onnx.load(str(folder / model), load_external_data=False).graph
        index = next(i for i in graph.input if i.name == "logits_index")
        calls.append({"dims": [d.dim_param for d in index.type.tensor_type.shape.dim], **kw})
        out = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
        context = onnx.helper.make_model(onnx.helper.make_graph([], "ctx", [], [out]))
        onnx.save(context, str(folder / trt.CONTEXT_MODEL))  # what the EP dumps, stamp-less
        trt.write_record(folder, RECORD)

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
    context = onnx.load(str(bundle.path / "engines/tensorrt-int4" / trt.CONTEXT_MODEL))
    stamps = {p.key: p.value for p in context.metadata_props}
    assert (stamps["tinyllm.precision"], stamps["tinyllm.merged_adapter"]) == ("int4", "")
    # Loading it: without the TensorRT EP a clear error naming what is missing; the
    # standard graph beside the (unbuilt) engine still runs on the CPU provider.
    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(MissingDependencyError, match=r"device='tensorrt' cannot run here: no"):
            tinyllm.Engine.load(bundle.path, device="tensorrt")
    cpu = tinyllm.Engine.load(bundle.path, device="cpu")
    assert len(cpu.generate("hello", GREEDY)[0].token_ids) == GREEDY.max_new_tokens
    # On a machine with TensorRT but another GPU, or another TensorRT: rebuild.
    monkeypatch.setattr(targets, "require_tensorrt", lambda doing: None)
    for gpu, version, wrong in [("NVIDIA H100", "10.3.0", "GPU"), ("NVIDIA L4", "10.8.0", "Te")]:
        monkeypatch.setattr(trt, "machine", lambda g=gpu, v=version: (g, v, "12.4", "1.31.1"))
        with pytest.raises(trt.TensorRTMismatchError, match=rf"built for {wrong}.*rebuild"):
            tinyllm.Engine.load(bundle.path, device="tensorrt")


def test_device_tensorrt_refuses_an_engine_of_another_target(exported: Path) -> None:
    import tinyllm

    with pytest.raises(ConfigError, match=r"engines/onnx-cpu-fp32 .* is target 'onnx-cpu'"):
        tinyllm.Engine.load(exported, engine="onnx-cpu-fp32", device="tensorrt")


# The --merge-adapter fallback: export folds one task's adapter into the base and the
# engine serves that task only; on the CPU with onnx-standard (the graph TensorRT builds).
MERGED = "onnx-standard-fp32-sentiment"
GREEDY = GenerationConfig(max_new_tokens=12, ignore_eos=True)
TEXT = "The room was spotless and the staff were kind"


@pytest.fixture(scope="module")
def merged(served: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``served`` (sentiment and booking with adapters, rewrite without) plus an
    onnx-standard engine with LoRA slots and one with sentiment's adapter merged (the CLI)."""
    import tinyllm
    from tinyllm.cli import main

    out = tmp_path_factory.mktemp("merged") / "m.tllm"
    tinyllm.export(served, "onnx-standard", out, max_seq_len=128)
    args = ["export", str(out), "--target", "onnx-standard", "--max-seq-len", "128"]
    main([*args, "--merge-adapter", "sentiment"])  # a failure exits non-zero
    return out


def test_merged_engine_gives_the_tokens_of_its_adapter_slot(merged: Path) -> None:
    import tinyllm

    slots = tinyllm.Engine.load(merged, engine="onnx-standard-fp32", max_batch=2)
    engine = tinyllm.Engine.load(merged, engine=MERGED, max_batch=2)
    assert engine.info.merged_adapter == "sentiment" and engine.info.lora_slots == 0
    assert set(engine.tasks) == {"sentiment"}
    prompts = [slots.encode(TEXT), slots.encode("Once upon a time")]
    want = [g.token_ids for g in slots.generate_ids(prompts, GREEDY, adapter="sentiment")]
    base = [g.token_ids for g in slots.generate_ids(prompts, GREEDY)]
    assert base != want  # the adapter changes the tokens, so the comparisons below can fail
    assert [g.token_ids for g in engine.generate_ids(prompts, GREEDY)] == want
    got = engine.generate_ids(prompts, GREEDY, adapter="sentiment")
    assert [g.token_ids for g in got] == want
    a, b = slots.run("sentiment", TEXT), engine.run("sentiment", TEXT)
    assert (b.text, b.token_ids, b.valid) == (a.text, a.token_ids, a.valid)


def test_merged_engine_refuses_other_tasks_and_adapters(merged: Path) -> None:
    import tinyllm
    from tinyllm.errors import UnknownTaskError

    engine = tinyllm.Engine.load(merged, engine=MERGED)
    for task in ("booking", "rewrite"):  # another adapter's task, and a base-model task
        with pytest.raises(UnknownTaskError, match=rf"task '{task}' is not served.*'sentiment'"):
            engine.run(task, TEXT)
    with pytest.raises(ConfigError, match=r"merged into its weights.*not 'booking'"):
        engine.generate_ids([[5, 6, 7]], GREEDY, adapter="booking")
    rewrite = tinyllm.api.load_tasks().task("rewrite")
    with pytest.raises(ConfigError, match=r"cannot add task 'rewrite'.*--merge-adapter rewrite"):
        engine.add_task(rewrite)
    assert set(engine.tasks) == {"sentiment"}


def test_merged_engine_files_say_which_adapter(merged: Path) -> None:
    import tinyllm

    bundle = tinyllm.open_bundle(merged)
    assert bundle.manifest.engines[MERGED].info["merged_adapter"] == "sentiment"
    assert "merged_adapter" not in bundle.manifest.engines["onnx-standard-fp32"].info
    folder = merged / "engines" / MERGED
    table = json.loads((folder / "tasks.json").read_text())["tasks"]
    assert list(table) == ["sentiment"]
    assert (table["sentiment"]["slot"], table["sentiment"]["adapter"]) == (0, None)
    assert "merged_adapter" not in json.loads(
        (merged / "engines/onnx-standard-fp32/engine.json").read_text()
    )


def test_engine_json_that_hides_the_merge_is_caught(
    merged: Path, tmp_path: Path, reseal: Any
) -> None:
    """The merged task is stamped into the graph: an engine.json without it (which would
    serve every task on one task's weights) or naming another task is refused."""
    import shutil

    import tinyllm

    copy = tmp_path / "copy.tllm"
    shutil.copytree(merged, copy)
    path = copy / "engines" / MERGED / "engine.json"
    info = json.loads(path.read_text())
    for claim, says in [(None, "None"), ("booking", "'booking'")]:
        path.write_text(json.dumps({**info, "merged_adapter": claim}))
        reseal(copy)  # the manifest's hashes agree: only the graph can tell the lie
        with pytest.raises(BundleError, match=rf"'merged_adapter' says {says} but the graph has"):
            tinyllm.Engine.load(copy, engine=MERGED)


def test_merged_int4_qdq_engine_serves_its_task(merged: Path, tmp_path: Path) -> None:
    """The QDQ graph of the merged weights (quantized after the merge) runs on the CPU
    provider, verified against the merged model; its logits sit near the fp32 merged
    engine's, far from the base model's."""
    import tinyllm

    bundle, verification = tinyllm.export(
        merged, "onnx-standard", tmp_path / "q.tllm", quant="int4", max_seq_len=128,
        merge_adapter="sentiment",
    )  # fmt: skip
    assert verification.passed
    engine = tinyllm.Engine.load(bundle.path, engine="onnx-standard-int4-sentiment")
    fp32 = tinyllm.Engine.load(bundle.path, engine=MERGED)
    base = tinyllm.Engine.load(bundle.path, engine="onnx-standard-fp32")
    ids = [fp32.encode(TEXT)]
    got, want, plain = (e.session.prefill(ids)[0] for e in (engine, fp32, base))
    assert np.abs(got - want).max() < np.abs(plain - want).max() / 2
    assert engine.run("sentiment", TEXT).output_tokens > 0


def test_merge_adapter_needs_a_task_with_an_adapter(served: Path, tmp_path: Path) -> None:
    import tinyllm

    for task, message in [
        ("rewrite", r"no LoRA adapter for task 'rewrite' \(adapters: booking, sentiment\)"),
        ("nope", r"no LoRA adapter for task 'nope'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            tinyllm.export(served, "onnx-standard", tmp_path / "x.tllm", merge_adapter=task)
    with pytest.raises(ConfigError, match=r"no LoRA slots"):
        tinyllm.export(
            served, "onnx-standard", tmp_path / "x.tllm", merge_adapter="sentiment", lora_slots=2
        )
    assert not (tmp_path / "x.tllm").exists()


@pytest.mark.gpu
def test_merged_tensorrt_engine_gives_the_adapter_slot_tokens(merged: Path, tmp_path: Path) -> None:
    import onnxruntime

    import tinyllm

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("needs ONNX Runtime's TensorrtExecutionProvider (onnxruntime-gpu + TensorRT)")
    bundle, _ = tinyllm.export(
        merged, "tensorrt", tmp_path / "t.tllm", max_seq_len=128, max_batch=2,
        merge_adapter="sentiment",
    )  # fmt: skip
    cpu = tinyllm.Engine.load(bundle.path, engine="onnx-standard-fp32", max_batch=2)
    gpu = tinyllm.Engine.load(bundle.path, engine="tensorrt-fp16-sentiment", device="tensorrt")
    prompts = [cpu.encode(TEXT), cpu.encode("Once upon a time")]
    want = [g.token_ids for g in cpu.generate_ids(prompts, GREEDY, adapter="sentiment")]
    assert [g.token_ids for g in gpu.generate_ids(prompts, GREEDY)] == want
    with pytest.raises(TinyLLMError, match=r"not served"):
        gpu.run("booking", TEXT)


def test_eval_on_a_merged_engine_refuses_other_tasks_before_running(merged: Path) -> None:
    """`tinyllm eval --backend engine` on a merged engine says which task it serves before
    any task runs, instead of failing at the first other task after scoring the ones before."""
    import tinyllm

    with pytest.raises(
        ConfigError, match=r"serves only 'sentiment', not 'booking'.*--task sentiment"
    ):
        tinyllm.api.evaluate(
            merged,
            names=["sentiment", "booking"],
            backend="engine",
            engine=MERGED,
            limit=1,
            progress=False,
        )
    report = tinyllm.api.evaluate(
        merged, names=["sentiment"], backend="engine", engine=MERGED, limit=2, progress=False
    )
    assert [r.task for r in report.results] == ["sentiment"]
