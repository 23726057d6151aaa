"""The compression benchmarks: pruning.py (pruned and healed children scored beside the
parent) and quantization.py (methods' errors, incremental quantization, relative drops)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def test_pruning_benchmark_table(bench: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(bench / "pruning.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--heal-steps" in out.stdout and "--unhealed" in out.stdout
    import pruning

    def task(score: float) -> dict[str, object]:
        return {"metric": "accuracy", "score": score, "n": 10, "invalid": 0.0}

    parent = {"a": task(0.5), "b": task(0.8), "c": task(0.0)}
    child = {"a": task(0.4), "b": task(0.8), "c": task(0.0)}
    # Tasks the parent scores 0 on have no relative drop; a: 20%, b: 0%.
    assert pruning.relative_drop(parent, child) == pytest.approx({"a": 0.2, "b": 0.0})
    text = pruning.table({"parent": parent, "healed": child})
    assert "mean relative drop of healed: 10.0% over 2 tasks" in text
    assert "relative drop of healed's mean score: 7.7%" in text  # 1.3 -> 1.2


def test_pruning_benchmark_end_to_end(bench: Path, tiny_llama_bundle: Path, tmp_path: Path) -> None:
    """pruning.py on tiny-llama: pruned and healed children at the ratio, each scored on
    every built-in task beside the parent, and the JSON record."""
    out = subprocess.run(
        [
            sys.executable, str(bench / "pruning.py"), str(tiny_llama_bundle), "--ratio", "0.8",
            "--limit", "2", "--heal-steps", "2", "--calib-samples", "2", "--unhealed",
            "--work", str(tmp_path / "work"),
        ],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    record = json.loads((tmp_path / "out" / "bench" / "pruning.json").read_text())
    assert set(record["results"]) == {"parent", "pruned", "healed"}
    tasks = set(record["results"]["parent"])
    assert len(tasks) == 6 and all(set(r) == tasks for r in record["results"].values())
    assert all(t["n"] == 2 for r in record["results"].values() for t in r.values())
    plan = record["prune"]["healed"]["plan"]
    assert plan["params_after"] < plan["params_before"] and abs(plan["ratio"] - 0.8) < 0.05
    assert len(record["prune"]["healed"]["heal_losses"]) == 2
    assert record["prune"]["pruned"]["heal_losses"] == []
    assert "mean relative drop of healed" in out.stdout


def test_quantization_benchmark_end_to_end(
    bench: Path, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    """quantization.py's main, steps 1 to 3 on the tiny model with two built-in tasks and
    three methods, the float model and RTN evaluated on one test example; fewer than two
    tasks and an unknown task are refused."""
    import quantization

    names = ["sentiment", "intent"]
    out = tmp_path / "quantization.json"
    argv = ["--source", str(tiny_llama_bundle), "--out", str(tmp_path / "quant")]
    argv += ["--json", str(out), "--calib-samples", "2", "--limit", "1", "--few-shot", "0"]
    quantization.main(
        [*argv, "--tasks", ",".join(names), "--methods", "rtn,gptq", "--eval-method", "rtn"]
    )
    record = json.loads(out.read_text())
    assert record["incremental"]["identical"] is True  # adding the last task: same weights
    assert record["incremental"]["seconds"] > 0 and list(record["reports"]) == ["mlgptq"]
    assert list(record["seconds"]) == ["mlgptq", "rtn", "gptq"]
    assert min(record["seconds"].values()) > 0
    errors = record["task_errors"]
    for method, per_task in errors.items():
        assert set(per_task) == set(names)
        assert all(0 < e < 1 for e in per_task.values()), (method, per_task)
    # GPTQ fits the calibration inputs; round-to-nearest ignores them.
    for t in names:
        assert errors["gptq"][t] < errors["rtn"][t] and errors["mlgptq"][t] < errors["rtn"][t]
    metrics = record["metrics"]
    assert set(metrics) == {"fp32", "rtn"}
    for scores in metrics.values():
        assert set(scores) == set(names) and all(0 <= v <= 1 for v in scores.values())
    assert set(record["mean_relative_drop"]) == {"rtn"}
    with pytest.raises(SystemExit, match="at least two"):
        quantization.main([*argv, "--tasks", "sentiment"])
    with pytest.raises(SystemExit, match="unknown task 'nope'"):
        quantization.main([*argv, "--tasks", "sentiment,nope"])


def test_quantization_summary_drops(bench: Path) -> None:
    """The mean relative drop leaves out the tasks the float model scores 0 on."""
    import argparse

    import quantization

    names = ["a", "b"]
    runs = {"mlgptq": {"seconds": 2.0, "report": {}}, "rtn": {"seconds": 1.0}}
    errors = {"mlgptq": {"a": 0.1, "b": 0.2}, "rtn": {"a": 0.3, "b": 0.4}}
    inc = {"seconds": 1.0, "identical": True}
    metrics = {"fp32": {"a": 0.5, "b": 0.0}, "rtn": {"a": 0.25, "b": 0.0}}
    args = argparse.Namespace(calib_samples=2, few_shot=0, limit=1)
    result = quantization.summarize(names, runs, inc, errors, metrics, args)
    assert result["mean_relative_drop"] == {"rtn": 0.5}
    assert result["seconds"] == {"mlgptq": 2.0, "rtn": 1.0}
    assert list(result["reports"]) == ["mlgptq"]
