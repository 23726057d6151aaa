"""The benchmarks of serving tasks: speculative.py (prompt-lookup drafts against plain
decoding) and tool_latency.py (tool calls against the peers that run them otherwise)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def test_speculative_benchmark_rates(bench: Path) -> None:
    import speculative

    def request(task: str, n: int, seconds: float, ttft: float) -> dict[str, object]:
        return {"task": task, "tokens": list(range(n)), "seconds": seconds, "ttft_s": ttft}

    # 10 + 30 tokens in 0.5 s; after the first token, 38 tokens in 0.4 s.
    runs = [[request("booking", 10, 0.2, 0.05), request("booking", 30, 0.3, 0.05)]]
    runs.append([request("booking", 10, 0.4, 0.1), request("booking", 30, 0.6, 0.1)])
    got = speculative.rates(runs, "booking")
    assert got["tok_s"] == pytest.approx((80 + 40) / 2)
    assert got["decode_tok_s"] == pytest.approx((38 / 0.4 + 38 / 0.8) / 2)
    assert got["tok_s_range"] == pytest.approx([40, 80])


def test_speculative_benchmark_end_to_end(
    bench: Path,
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """speculative.py's main on tiny-llama serving booking and rewrite (fp32): the plain
    and speculating engines give identical tokens and every rate is positive; a
    speculating engine that answers differently is reported as not identical."""
    import speculative

    import tinyllm

    suite = tinyllm.api.load_tasks()
    tasks = [suite.task(n) for n in speculative.TASKS]
    child = tinyllm.api.add_tasks(tiny_llama_bundle, tmp_path / "t.tllm", tasks, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=512)
    out = tmp_path / "speculative.json"
    argv = ["--bundle", str(bundle.path), "--requests", "2", "--threads", "1", "--out", str(out)]
    speculative.main([*argv, "--rounds", "2"])
    report = json.loads(out.read_text())
    assert (report["requests_per_task"], report["rounds"]) == (2, 2)
    r = report["results"]["fp32"]
    assert r["identical"] is True and set(r["tasks"]) == set(speculative.TASKS)
    for row in r["tasks"].values():
        assert row["output_tokens"] > 0
        for mode in ("plain", "spec"):
            lo, hi = row[mode]["tok_s_range"]
            assert 0 < lo <= row[mode]["tok_s"] <= hi
        assert row["speedup"] == pytest.approx(row["spec"]["tok_s"] / row["plain"]["tok_s"])
    assert r["verify_steps"] > 0 and 0 <= r["acceptance"] <= 1
    assert capsys.readouterr().out.count("| yes |") == len(speculative.TASKS)

    real, engines = speculative.serve, []

    def one_more_token(engine: Any, work: list[Any]) -> list[dict[str, Any]]:
        rows = real(engine, work)
        if engine not in engines:
            engines.append(engine)  # compare() warms the plain engine up first
        if engine is engines[-1] and len(engines) == 2:
            rows[-1]["tokens"].append(0)
        return rows

    monkeypatch.setattr(speculative, "serve", one_more_token)
    speculative.main([*argv, "--rounds", "1"])
    assert json.loads(out.read_text())["results"]["fp32"]["identical"] is False
    assert "| NO |" in capsys.readouterr().out


def test_tool_latency_benchmark_with_scripted_peers(bench: Path) -> None:
    import tool_latency

    calls: list[str] = []

    def peer(name: str, seconds: dict[str, float], tool: float):
        def run(text: str) -> tuple[float, float]:
            calls.append(f"{name}:{text}")
            return seconds[text], tool

        return run

    slow = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 5.0}
    fast = {k: v / 4 for k, v in slow.items()}
    results = tool_latency.measure(
        {"tools": peer("tools", slow, 0.5), "call": peer("call", fast, 0.0)}, list(slow)
    )
    assert results["tools"]["p50_s"] == 3.0 and results["call"]["p50_s"] == 0.75
    assert results["tools"]["p95_s"] == pytest.approx(4.8)  # 4 + 0.8 * (5 - 4)
    assert results["tools"]["tool_share_p50"] == pytest.approx(0.5 / 3.0)
    assert results["call"]["tool_share_p50"] == 0.0
    ratios = tool_latency.ratios(results)
    assert ratios == {"tools_x_call_p50": 4.0, "tools_x_call_p95": pytest.approx(4.0)}
    # a warm-up per peer, then every peer on each input before the next input
    assert calls[:4] == ["tools:a", "call:a", "tools:a", "call:a"]
    assert calls[4:6] == ["tools:b", "call:b"]
    with pytest.raises(ValueError, match="no values"):
        tool_latency.percentile([], 0.5)


def test_tool_latency_benchmark_end_to_end(
    bench: Path, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    """tool_latency.py's main, ``--quick`` (tiny-llama with the calculator): every peer
    answers every input; the pipeline is all tool, ``call`` runs none, ``tools`` runs
    one per request; ``stepwise`` takes more engine runs a call than ``call`` (forced
    text written in verify steps); a task without tools is refused by name."""
    import tool_latency

    out = tmp_path / "tool_latency.json"
    tool_latency.main(["--quick", "--requests", "3", "--json", str(out)])
    record = json.loads(out.read_text())
    assert (record["task"], record["inputs"]) == ("arithmetic", 3)
    results = record["results"]
    assert set(results) == {"tools", "call", "pipeline", "stepwise"}
    for r in results.values():
        assert r["n"] == 3 and 0 < r["p50_s"] <= r["p95_s"]
    assert results["tools"]["runs_mean"] == results["call"]["runs_mean"]  # the same decoding
    assert results["stepwise"]["runs_mean"] > results["call"]["runs_mean"] > 1
    assert record["forced"]["forced_accepted"] > 0
    assert record["identical_calls"] == "4 of 4"  # the warm-up and the 3 inputs
    assert results["pipeline"]["tool_share_p50"] == 1.0
    assert results["call"]["tool_share_p50"] == 0.0
    assert 0 < results["tools"]["tool_share_p50"] < 1  # the call ran, inside the request
    tools, call = results["tools"], results["call"]
    assert record["ratios"]["tools_x_call_p50"] == pytest.approx(tools["p50_s"] / call["p50_s"])
    with pytest.raises(SystemExit, match="'arithmetic' of the suite names no tools"):
        tool_latency.main(["--bundle", str(tiny_llama_bundle), "--json", str(out)])
