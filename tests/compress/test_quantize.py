"""The quantization recipe on a tiny model: packed bundles, export, incremental, LoRA modes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import tinyllm
from tinyllm import api
from tinyllm.adapters import LoraAdapter, adapter_shapes, merge_adapter
from tinyllm.bundle import Bundle
from tinyllm.compress.report import CompressReport
from tinyllm.errors import BundleError, ConfigError
from tinyllm.models import dequantized_weights

TASKS = ["alpha", "beta", "gamma"]


def random_adapter(bundle: Bundle, rank: int, seed: int) -> LoraAdapter:
    targets = ("q_proj", "v_proj", "up_proj", "down_proj")
    rng = np.random.default_rng(seed)
    tensors = {
        k: rng.standard_normal(s).astype(np.float32) * 0.2
        for k, s in adapter_shapes(bundle.config, rank, targets).items()
    }
    return LoraAdapter(rank=rank, alpha=2.0 * rank, targets=targets, tensors=tensors)


SUITE: list[Path] = []


def compress(bundle: Path, out: Path, **kwargs: object) -> tuple[Bundle, CompressReport]:
    """api.compress on the tiny file suite, without progress bars."""
    return api.compress(bundle, out, tasks=SUITE[0], progress=False, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _suite(tiny_suite: Path) -> None:
    SUITE[:] = [tiny_suite]


@pytest.fixture(scope="module")
def full(
    tiny_llama_bundle: Path, tiny_suite: Path, tmp_path_factory: pytest.TempPathFactory
) -> Bundle:
    SUITE[:] = [tiny_suite]
    out = tmp_path_factory.mktemp("q") / "full.tllm"
    bundle, _ = compress(tiny_llama_bundle, out, quant="int4-mlgptq", names=TASKS, calib_samples=8)
    return bundle


def test_default_is_pooled_gptq(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    bundle, _ = compress(tiny_llama_bundle, tmp_path / "d.tllm", names=TASKS[:1], calib_samples=4)
    spec = bundle.quant_spec()
    assert spec is not None and spec.method == "gptq" and spec.bits == 4


def test_quantized_bundle_loads_dequantized_and_exports_packed_weights(
    full: Bundle, tmp_path: Path
) -> None:
    spec = full.quant_spec()
    assert spec is not None and spec.method == "mlgptq" and spec.bits == 4
    assert len(spec.tensors) == 7 * full.config.num_hidden_layers
    stored = load_file(str(full.weights_path))
    name = "model.layers.0.mlp.down_proj.weight"
    assert name not in stored and stored[f"{name}.qweight"].dtype == np.uint8
    model = api.load_torch_model(full).model
    deq = dequantized_weights(full)[name]
    np.testing.assert_array_equal(model.state_dict()[name].numpy(), deq)
    exported, verification = api.export(full.path, out=tmp_path / "e.tllm")
    assert verification.passed and "onnx-cpu-int4" in exported.manifest.engines
    import onnx

    graph = onnx.load(str(exported.path / "engines/onnx-cpu-int4/model.onnx")).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    key = next(k for k in inits if "layers.0.mlp.down_proj" in k and k.endswith("qweight"))
    np.testing.assert_array_equal(inits[key], stored[f"{name}.qweight"])  # no re-quantization
    with pytest.raises(ConfigError, match="already quantized"):
        api.export(full.path, out=tmp_path / "e2.tllm", quant="int8")


def test_quantized_bundle_exports_a_qdq_standard_graph_without_requantizing(
    full: Bundle, tmp_path: Path
) -> None:
    import onnx

    from tinyllm.quantformat import read_weights
    from tinyllm.runtime.qdq import to_qdq

    exported, verification = api.export(full.path, "onnx-standard", out=tmp_path / "s.tllm")
    assert verification.passed and "onnx-standard-int4" in exported.manifest.engines
    graph = onnx.load(str(exported.path / "engines/onnx-standard-int4/model.onnx")).graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    packed, _ = read_weights(full)
    name = "model.layers.0.mlp.down_proj.weight"
    codes = next(v for k, v in inits.items() if "layers.0.mlp.down_proj" in k and "qcodes" in k)
    zeros = next(v for k, v in inits.items() if "layers.0.mlp.down_proj" in k and "qzeros" in k)
    scales = next(v for k, v in inits.items() if "layers.0.mlp.down_proj" in k and "qscales" in k)
    p = packed[name]
    k = p.in_features
    np.testing.assert_array_equal(codes.astype(np.int16), p.codes()[:, :k].T)  # same codes
    np.testing.assert_array_equal(zeros.astype(np.int16), p.zeros().T)
    np.testing.assert_array_equal(scales.view(np.uint32), p.scales.T.view(np.uint32))
    np.testing.assert_array_equal(to_qdq(p).dequantize(), p.dequantize().T)


def test_inspect_counts_logical_parameters(full: Bundle, tiny_llama_bundle: Path) -> None:
    after, before = api.inspect(full.path), api.inspect(tiny_llama_bundle)
    assert after.parameters == before.parameters
    assert "mlgptq int4, group 32" in after.format()


@pytest.fixture(scope="module")
def incremental(
    tiny_llama_bundle: Path, full: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Bundle, Bundle, CompressReport]:
    """(two-task bundle, the same plus ``--add-task`` of the third, the addition's report)."""
    tmp = tmp_path_factory.mktemp("inc")
    first, _ = compress(
        tiny_llama_bundle, tmp / "two.tllm", quant="int4-mlgptq", names=TASKS[:2],
        calib_samples=8,
    )  # fmt: skip
    added, report = compress(first.path, tmp / "three.tllm", add_task=TASKS[2])
    return first, added, report


def test_incremental_equals_full_bit_for_bit(
    full: Bundle, incremental: tuple[Bundle, Bundle, CompressReport], tmp_path: Path
) -> None:
    first, added, report = incremental
    assert report.calibrated == [TASKS[2]] and sorted(report.reused) == sorted(TASKS[:2])
    a, b = load_file(str(added.weights_path)), load_file(str(full.weights_path))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    two = load_file(str(first.weights_path))
    assert any(not np.array_equal(two[k], b[k]) for k in b)  # the third task mattered
    with pytest.raises(ConfigError, match="already calibrated"):
        compress(added.path, tmp_path / "x.tllm", add_task=TASKS[0])


def test_incremental_links_the_cached_hessians(
    incremental: tuple[Bundle, Bundle, CompressReport],
) -> None:
    """The reused tasks' Hessian files are the previous bundle's, linked, not rewritten, and
    the new bundle still verifies in full (their hashes carried over are right)."""
    first, added, _ = incremental
    for task in TASKS[:2]:
        name = f"stats/hessians/{task}.safetensors"
        assert (added.path / name).samefile(first.path / name)
        assert added.manifest.files[name] == first.manifest.files[name]
    assert Bundle.open(added.path).hashes_checked


def test_incremental_error_report_reuses_cached_denominators(
    tiny_llama_bundle: Path, incremental: tuple[Bundle, Bundle, CompressReport]
) -> None:
    """The error report's denominators were cached by the first run and reused: the
    reported errors equal a fresh computation with nothing cached."""
    from tinyllm.compress.gptq import QuantResult
    from tinyllm.compress.hessian import TaskHessians
    from tinyllm.compress.mlgptq import task_errors
    from tinyllm.compress.quantize import target_id

    _, added, report = incremental
    source = Bundle.open(tiny_llama_bundle)
    hess = {t: TaskHessians.load(added.path / f"stats/hessians/{t}.safetensors") for t in TASKS}
    n_linear = 7 * added.config.num_hidden_layers
    assert all(len(h.energies[target_id(source, None)]) == n_linear for h in hess.values())
    weights = api.load_torch_model(tiny_llama_bundle).model.state_dict()
    deq = dequantized_weights(added)
    results = {
        n: QuantResult(None, torch.from_numpy(deq[n]))  # type: ignore[arg-type]
        for n in deq
        if n.endswith("proj.weight")
    }
    fresh = task_errors(weights, added.config, results, hess)
    assert fresh.keys() == report.task_errors.keys()
    for t in fresh:
        assert report.task_errors[t] == pytest.approx(fresh[t], rel=1e-6)


def with_adapters(src: Path, out: Path, adapters: dict[str, LoraAdapter]) -> Bundle:
    bundle = Bundle.open(src)
    suite = api.load_tasks(SUITE[0])
    return api.add_tasks(bundle.path, out, [suite.task(t) for t in adapters], adapters)


def test_merged_mode_folds_the_adapter(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    bundle = Bundle.open(tiny_llama_bundle)
    adapter = random_adapter(bundle, 4, 0)
    src = with_adapters(tiny_llama_bundle, tmp_path / "a.tllm", {"alpha": adapter})
    merged, _ = compress(
        src.path,
        tmp_path / "m.tllm",
        quant="int8-rtn",
        names=["alpha"],
        lora="merged",
    )
    assert "alpha" not in merged.manifest.adapters
    want = merge_adapter(load_file(str(bundle.weights_path)), bundle.config, adapter)
    got = dequantized_weights(merged)
    name = "model.layers.1.mlp.up_proj.weight"
    base = load_file(str(bundle.weights_path))[name]
    assert np.abs(want[name] - base).max() > 0.05  # the adapter changes the weight ...
    np.testing.assert_allclose(got[name], want[name], atol=0.02)  # ... and it is folded in


def test_separate_mode_keeps_adapters_and_calibrates_with_them(
    tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    bundle = Bundle.open(tiny_llama_bundle)
    adapter = random_adapter(bundle, 4, 1)
    src = with_adapters(tiny_llama_bundle, tmp_path / "a.tllm", {"alpha": adapter})
    sep, report = compress(src.path, tmp_path / "s.tllm", names=["alpha"], calib_samples=4)
    plain, _ = compress(
        tiny_llama_bundle,
        tmp_path / "p.tllm",
        names=["alpha"],
        calib_samples=4,
    )
    assert sep.manifest.adapters["alpha"].rank == 4 and sep.manifest.lora_mode == "separate"
    h_sep = load_file(str(sep.path / "stats/hessians/alpha.safetensors"))
    h_plain = load_file(str(plain.path / "stats/hessians/alpha.safetensors"))
    key = "model.layers.1.attn_in"  # layer 0's adapter changes layer 1's inputs
    assert not np.allclose(h_sep[key], h_plain[key])
    assert set(report.task_errors) == {"alpha"} and report.task_errors["alpha"] < 0.05


def test_bad_inputs_are_clear_errors(tiny_llama_bundle: Path, tmp_path: Path, full: Bundle) -> None:
    with pytest.raises(ConfigError, match="unknown quantization 'int4-foo'"):
        compress(tiny_llama_bundle, tmp_path / "x.tllm", quant="int4-foo")
    with pytest.raises(ConfigError, match="already quantized"):
        compress(full.path, tmp_path / "x.tllm", names=["alpha"])
    rtn, _ = compress(tiny_llama_bundle, tmp_path / "r.tllm", quant="int4-rtn")
    with pytest.raises(ConfigError, match="not a calibrated"):
        compress(rtn.path, tmp_path / "x.tllm", add_task="gamma")
    bundle = Bundle.open(tiny_llama_bundle)
    two = {"alpha": random_adapter(bundle, 2, 0), "beta": random_adapter(bundle, 2, 1)}
    src = with_adapters(tiny_llama_bundle, tmp_path / "two.tllm", two)
    with pytest.raises(ConfigError, match="folds one adapter"):
        compress(src.path, tmp_path / "x.tllm", names=list(two), lora="merged")


def test_empty_calibration_set_and_rank_mismatch(
    tiny_llama_bundle: Path, tmp_path: Path, reseal: Callable[[Path], None]
) -> None:
    from tinyllm.compress.hessian import calibration_texts

    task = api.load_tasks(SUITE[0]).task("alpha")
    with pytest.raises(ConfigError, match="calibration set is empty"):
        calibration_texts(task, [], 8, None)
    bundle = Bundle.open(tiny_llama_bundle)
    src = with_adapters(
        tiny_llama_bundle, tmp_path / "a.tllm", {"alpha": random_adapter(bundle, 4, 0)}
    )
    manifest = json.loads((src.path / "manifest.json").read_text())
    manifest["adapters"]["alpha"]["rank"] = 8
    (src.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="rank mismatch"):
        compress(src.path, tmp_path / "x.tllm", names=["alpha"])


def test_bad_packed_shape_is_rejected(
    full: Bundle, tmp_path: Path, reseal: Callable[[Path], None]
) -> None:
    import shutil

    from safetensors.numpy import save_file

    copy = tmp_path / "bad.tllm"
    shutil.copytree(full.path, copy)
    tensors = load_file(str(copy / "weights.safetensors"))
    name = "model.layers.0.self_attn.q_proj.weight.scales"
    tensors[name] = tensors[name][:, :1].copy()
    save_file(tensors, str(copy / "weights.safetensors"))
    reseal(copy)
    with pytest.raises(BundleError, match=r"q_proj\.weight\.scales' has shape"):
        tinyllm.open_bundle(copy)


def test_balanced_aggregation_is_recorded_and_added_to_bit_for_bit(
    tiny_llama_bundle: Path, full: Bundle, tmp_path: Path
) -> None:
    from tinyllm.compress.mlgptq import QuantSettings
    from tinyllm.compress.quantize import Calibration, quantize_bundle

    suite = api.load_tasks(SUITE[0])
    source = Bundle.open(tiny_llama_bundle)
    settings = QuantSettings("mlgptq", aggregation="balanced")

    def run(names: list[str], out: str) -> Bundle:
        cal = Calibration([suite.task(t) for t in names], samples=8)
        return quantize_bundle(source, tmp_path / out, suite, settings, cal, progress=False).bundle

    three, two = run(TASKS, "three.tllm"), run(TASKS[:2], "two.tllm")
    spec = two.quant_spec()
    assert spec is not None and spec.calibration["aggregation"] == "balanced"
    added, _ = compress(two.path, tmp_path / "added.tllm", add_task=TASKS[2])
    a, b = load_file(str(added.weights_path)), load_file(str(three.weights_path))
    assert all(np.array_equal(a[k], b[k]) for k in b)
    maxed = load_file(str(full.weights_path))  # the same tasks and samples, max aggregation
    assert any(not np.array_equal(maxed[k], b[k]) for k in b)
