"""The bandwidth floor of benchmarks/decode_cpu.py, the step profile of
benchmarks/decode_steps.py, the instruction counters of benchmarks/decode_instructions.py
and benchmarks/decode_host.py compute what they claim (issue #15)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tinyllm
from tinyllm.runtime.roofline import graph_weights


def test_floor_figures_are_steps_times_bytes_over_bandwidth(
    bench: Path,
) -> None:
    import decode_cpu

    row = {"batch": 8, "decode_tok_s": {"median": 80.0}}  # 10 steps/s, each row a token
    got = decode_cpu.floor_figures(row, 10**9, 20e9)
    assert got == {"decode_bytes_per_step": 10**9, "achieved_gb_s": 10.0, "pct_floor": 50.0}
    single = decode_cpu.floor_figures({"batch": 1, "decode_tok_s": {"median": 80.0}}, 10**9, 20e9)
    assert single["pct_floor"] == pytest.approx(400.0)  # batch matters: 80 steps/s here


def test_step_bytes_are_counted_in_the_engine_graph(
    tiny_llama_bundle: Path, tmp_path: Path, bench: Path
) -> None:
    import decode_cpu
    import peers

    paths = peers.prepare_from(tiny_llama_bundle, "tiny", "int4", ["tinyllm"], tmp_path)
    engine = paths["tinyllm"]
    assert isinstance(engine, Path)
    bundle = tinyllm.open_bundle(tiny_llama_bundle)
    counted = decode_cpu.step_bytes(engine, bundle, "int4")
    graph = next(engine.glob("engines/*/model.onnx"))
    weights = graph_weights(graph)
    assert counted == weights.decode_bytes
    # The embedding table (a row lookup) is resident but not read in full by a step.
    assert weights.resident_bytes > counted > 0
    # Without an engine: the estimate from the config, same order of magnitude.
    estimate = decode_cpu.step_bytes(None, bundle, "int4")
    assert estimate == decode_cpu.decode_bytes(bundle, "int4")
    assert 0.5 < counted / estimate < 2.0


def test_graph_weights_leave_out_quantized_row_lookups(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def init(name: str, n: int, dtype: type = np.uint8) -> Any:
        return numpy_helper.from_array(np.zeros(n, dtype), name)

    nodes = [
        helper.make_node(
            "GatherBlockQuantized", ["table", "ids", "table_scales"], ["h"], domain="com.microsoft"
        ),
        helper.make_node("MatMulNBits", ["h", "w", "w_scales"], ["y"], domain="com.microsoft"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [
            init("table", 1000),
            init("table_scales", 100, np.float32),
            init("w", 64),
            init("w_scales", 4, np.float32),
        ],
    )
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph), str(path))
    weights = graph_weights(path)
    assert weights.resident_bytes == 1000 + 400 + 64 + 16
    assert weights.decode_bytes == 64 + 16  # the lookup's table and scales are not read whole


def run_event(ts: int, dur: int) -> dict[str, Any]:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def node_event(ts: int, dur: int, op: str) -> dict[str, Any]:
    return {
        "cat": "Node",
        "name": f"n{ts}_kernel_time",
        "ts": ts,
        "dur": dur,
        "args": {"op_name": op},
    }


def test_decode_runs_and_kernel_times_per_step(bench: Path) -> None:
    import decode_steps

    # 5 new tokens: one prefill run (t=0), 4 decode runs and one trailing run (t=5000).
    runs = [run_event(0, 500), *(run_event(1000 * i, 100) for i in range(1, 6))]
    events = [
        *reversed(runs),  # not in time order in the file
        node_event(10, 400, "MatMulNBits"),  # inside the prefill: not counted
        node_event(2010, 60, "MatMulNBits"),
        node_event(2080, 20, "GroupQueryAttention"),
        node_event(3010, 80, "MatMulNBits"),
        node_event(4010, 70, "MatMulNBits"),
        node_event(5010, 90, "MatMulNBits"),  # the trailing run: left out
        node_event(2500, 99, "MatMulNBits"),  # between runs: not counted
        {"cat": "Node", "name": "n_fence_before", "ts": 2001, "dur": 1},
    ]
    picked = decode_steps.decode_runs(events, 5)
    assert [r["ts"] for r in picked] == [2000, 3000, 4000]
    ops = decode_steps.op_times(events, picked)
    assert ops == pytest.approx({"MatMulNBits": 0.07, "GroupQueryAttention": 20 / 3 / 1e3})
    assert list(ops) == ["MatMulNBits", "GroupQueryAttention"]  # largest first
    with pytest.raises(ValueError, match="not a decode"):
        decode_steps.decode_runs(events, 7)


def test_summarize_gives_median_and_range(bench: Path) -> None:
    import decode_steps

    rounds = [
        {"settings": {}, "decode_steps": 3, "run_ms": r, "step_ms": s, "host_ms": s - r,
         "ops_ms": ops, "row0_tokens": [1]}
        for r, s, ops in [(10.0, 11.0, {"A": 1.0}), (12.0, 15.0, {"A": 3.0, "B": 5.0}),
                          (11.0, 12.0, {"A": 2.0})]
    ]  # fmt: skip
    got = decode_steps.summarize(rounds)
    assert got["run_ms"] == {"median": 11.0, "min": 10.0, "max": 12.0}
    assert got["host_ms"] == {"median": 1.0, "min": 1.0, "max": 3.0}
    assert got["ops_ms"] == {"A": 2.0, "B": 0.0}  # an op a round lacks counts as 0 there


def test_decode_steps_profiles_tinyllm_in_its_own_process(tmp_path: Path, bench: Path) -> None:
    """decode_steps.py's main on tiny-llama: the engine profiled in its own worker over two
    rounds, the step split into ONNX Runtime's run and the host's share; a peer that
    cannot run is recorded as skipped."""
    import decode_steps

    out = tmp_path / "steps.json"
    decode_steps.main(
        [
            "--model", "tiny-llama", "--precision", "fp32", "--engines", "tinyllm,llama.cpp",
            "--batch", "2", "--prompt-tokens", "8", "--new-tokens", "6", "--rounds", "2",
            "--threads", "1", "--spin", "off", "--out-dir", str(tmp_path), "--out", str(out),
        ]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["llama.cpp"]["skipped"].startswith("no GGUF of tiny-llama")
    got = report["tinyllm"]
    assert got["decode_steps"] == 4  # 5 decode runs for 6 tokens, the last one left out
    assert got["settings"]["allow_spinning"] == "0" and len(got["rounds"]) == 2
    assert 0 < got["run_ms"]["min"] <= got["run_ms"]["max"] and got["step_ms"]["median"] > 0
    for r in got["rounds"]:
        assert r["host_ms"] == pytest.approx(r["step_ms"] - r["run_ms"])
    assert "MatMul" in got["ops_ms"] and all(v > 0 for v in got["ops_ms"].values())
    assert len(got["row0_tokens"]) == 6


def test_instruction_counter_steps_the_graph_as_its_engine_does(
    tiny_llama_bundle: Path, tmp_path: Path, bench: Path
) -> None:
    """benchmarks/decode_instructions.py's child, natively (no valgrind): tinyllm's graph
    fed per row, the KV written in place at position ``past`` of every row only."""
    import decode_instructions
    import peers

    paths = peers.prepare_from(tiny_llama_bundle, "tiny", "int4", ["tinyllm"], tmp_path)
    engine = paths["tinyllm"]
    assert isinstance(engine, Path)
    graph = decode_instructions.graph_file(engine)
    config = tinyllm.open_bundle(tiny_llama_bundle).config
    spec = {"graph": str(graph), "batch": 3, "past": 5, "kv_len": 16, "steps": 1}
    spec["head_dim"] = config.head_dim
    result = decode_instructions.run_steps(spec)
    assert result["logits_shape"] == [3, config.vocab_size]
    assert len(result["kv"]) == 2 * config.num_hidden_layers
    # Re-create the random buffers the step started from: only position 5 changed.
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    _, before = decode_instructions.bind_step(session, 3, 5, 16, config.head_dim)
    for after, start in zip(result["kv"], before, strict=True):
        changed = np.argwhere((after != start).any(axis=(0, 1, 3)))
        assert changed.ravel().tolist() == [5]
    with pytest.raises(FileNotFoundError, match="no ONNX graph"):
        decode_instructions.graph_file(tmp_path / "nothing")


def test_instruction_counter_reads_callgrind_annotate(bench: Path) -> None:
    import decode_instructions

    text = """--------------------------------------------------------------------------------
1,431,598,538 (100.0%)  PROGRAM TOTALS
--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
918,142,032 (64.13%)  ???:0x0000000001022b80 [/x/onnxruntime_pybind11_state.so]
 11,426,143 ( 0.80%)  ./string/memmove.S:__memcpy_avx_unaligned_erms [/lib/libc.so.6]
      1,000 ( 0.00%)  ???:0x0000000001022b80 [/x/onnxruntime_pybind11_state.so]
"""
    got = decode_instructions.parse_annotate(text)
    assert got == {
        "???:0x0000000001022b80": 918_143_032,
        "memmove.S:__memcpy_avx_unaligned_erms": 11_426_143,
    }
    assert decode_instructions.parse_annotate("no counts here\n") == {}


def test_host_counter_counts_rows_of_a_staggered_workload(
    tiny_llama_bundle: Path, tmp_path: Path, bench: Path
) -> None:
    """benchmarks/decode_host.py's main on tiny-llama, natively (no valgrind): four prompts
    prefilled two per step; each decode run computes only rows that take a token."""
    import decode_host
    import peers

    engine = peers.prepare_from(tiny_llama_bundle, "tiny", "int4", ["tinyllm"], tmp_path)
    path = engine["tinyllm"]
    assert isinstance(path, Path)
    out = tmp_path / "host.json"
    report = decode_host.main(
        [
            "--bundle", str(path), "--batch", "4", "--prompt-tokens", "8", "--new-tokens", "4",
            "--prefill-tokens", "16", "--out", str(out),
        ]
    )  # fmt: skip
    rows = json.loads(out.read_text())["rows"]
    assert rows == report["rows"]
    assert rows["runs"] == [
        ["prefill", 2], ["decode", 2], ["prefill", 2], ["decode", 4], ["decode", 4],
        ["decode", 2],
    ]  # fmt: skip
    assert rows["decode_rows_computed"] == rows["decode_tokens"] == 4 * 3
    assert rows["dummy_rows"] == 0 and len(report["row0_tokens"]) == 4


def test_host_counter_sees_placeholder_rows_and_reads_callgrind_totals(
    bench: Path,
) -> None:
    import decode_host

    # The loop before #15's fix: every run spanned all four rows.
    runs = [("prefill", 2), ("prefill", 2), *[("decode", 4)] * 4]
    got = decode_host.summarize(runs, [[1, 2, 3, 4]] * 4)
    assert got["decode_rows_computed"] == 16 and got["decode_tokens"] == 12
    assert got["dummy_rows"] == 4
    # summary: counts the dumping thread only; totals: every thread's cost lines.
    text = "events: Ir\nsummary: 1234\nfn=f\n0 5000\ntotals: 5000\n"
    assert decode_host.callgrind_total(text) == 5000
    with pytest.raises(ValueError, match="no totals"):
        decode_host.callgrind_total("events: Ir\nsummary: 1234\n")
