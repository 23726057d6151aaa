"""Node labels of exported graphs, and ONNX Runtime's profile JSON aggregated."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tinyllm.errors import TinyLLMError
from tinyllm.runtime.opprofile import NodeLabel, label_graph, read_profile


def test_nodes_are_labelled_by_layer_and_component(served: Path) -> None:
    edited, labels = label_graph(served / "engines/onnx-cpu-fp32/model.onnx")
    assert len(edited) > 1000 and len(labels) > 100
    kinds = Counter((lab.layer, lab.component) for lab in labels.values())
    for layer in ("0", "1"):
        assert kinds[(layer, "attention")] == 1  # one GroupQueryAttention per layer
        assert kinds[(layer, "lora")] > 10  # the adapters' gathers and matmuls
        assert kinds[(layer, "attention proj")] >= 1 and kinds[(layer, "mlp")] >= 1
    assert kinds[("embed", "embedding")] == 1 and kinds[("head", "lm head")] >= 1
    names = list(labels)
    assert names[0] == "Lembed/embedding/Gather#0"
    assert all(name.count("/") == 2 and "#" in name for name in names)


def _events(runs: list[tuple[float, list[tuple[str, float]]]]) -> list[dict[str, object]]:
    """An ONNX Runtime profile: a model_run per run, a kernel event per node."""
    events: list[dict[str, object]] = [
        {"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5, "ph": "X"}
    ]
    for ts, nodes in runs:
        total = sum(d for _, d in nodes)
        events.append(
            {"cat": "Session", "name": "model_run", "ts": ts, "dur": total + 10, "ph": "X"}
        )
        at = ts + 5
        for name, dur in nodes:
            events.append(
                {
                    "cat": "Node",
                    "name": f"{name}_kernel_time",
                    "ts": at,
                    "dur": dur,
                    "ph": "X",
                    "args": {"op_name": name.split("/")[2].split("#")[0]},
                }
            )
            at += dur
    return events


def test_profile_is_aggregated_per_run_kind(tmp_path: Path) -> None:
    mm, gqa = "L0/mlp/MatMul#3", "L0/attention/GroupQueryAttention#4"
    labels = {mm: NodeLabel("0", "mlp", "MatMul"), gqa: NodeLabel("0", "attention", "GQA")}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_events([(100, [(mm, 40), (gqa, 20)]), (300, [(mm, 8)])])))
    loop = [("prefill", 1.0001, 1.0001 + 70e-6), ("decode", 1.0003, 1.0003 + 20e-6)]
    profile = read_profile(path, labels, loop, origin=1.0)
    assert profile.runs == {"prefill": 1, "decode": 1}
    assert profile.kernel_ms == {"prefill": pytest.approx(0.06), "decode": pytest.approx(0.008)}
    by_op = {r["key"]: r for r in profile.by_op.rows()}
    assert by_op["MatMul"]["prefill_ms"] == pytest.approx(0.04)
    assert by_op["MatMul"]["decode_ms"] == pytest.approx(0.008)
    assert profile.coverage() == pytest.approx(0.068 / 0.09)
    kernels = [e for e in profile.events if e["tid"] == 2]
    assert kernels[0]["ts"] == pytest.approx(105.0)  # moved onto the loop's clock
    assert {r["key"] for r in profile.by_component.rows()} == {"mlp", "attention"}


def test_profile_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(_events([(100, [("x/y/Z#1", 4)])])))
    with pytest.raises(TinyLLMError, match="profiled 1 runs, the loop timed 2"):
        read_profile(path, {}, [("decode", 0.0, 1.0), ("decode", 1.0, 2.0)], 0.0)
    path.write_text("[{")
    with pytest.raises(TinyLLMError, match="profile cannot be read"):
        read_profile(path, {}, [], 0.0)
