"""decode_cpu.py, the CPU decode benchmark, with its worker (decode_worker.py), its
peers (peers.py) and llama.cpp's batch runner (llamacpp_batch.py): the harness measures,
rotates and reports what it claims, and a peer that cannot run or crashes is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tinyllm.runtime import native


def test_decode_benchmark_end_to_end(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """decode_cpu.py's main on tiny-llama at batch 1 and 2: figures per row, the floor
    figures from the bytes it counted, row 0's tokens the same in both batches, and a peer
    that cannot run (llama.cpp has no GGUF of tiny-llama) reported as skipped."""
    import decode_cpu

    out = tmp_path / "decode.json"
    decode_cpu.main(
        [
            "--models", "tiny-llama", "--precisions", "fp32", "--engines", "tinyllm,llama.cpp",
            "--batches", "1,2", "--prompt-tokens", "4", "--new-tokens", "4", "--rounds", "2",
            "--threads", "1", "--spin", "off", "--bandwidth-mib", "16",
            "--out-dir", str(tmp_path), "--out", str(out),
        ]
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["machine"]["read_bandwidth_gb_s"] > 0
    step_bytes = report["decode_bytes_per_step"]["tiny-llama fp32"]
    assert step_bytes > 0
    rows = report["rows"]
    assert [(r["engine"], r["batch"]) for r in rows] == [("tinyllm", 1), ("tinyllm", 2)]
    for r in rows:
        assert len(r["rounds"]["decode_tok_s"]) == 2 and len(r["row0_tokens"]) == 4
        assert 0 < r["decode_tok_s"]["min"] <= r["decode_tok_s"]["max"]
        steps_s = r["decode_tok_s"]["median"] / r["batch"]
        assert r["achieved_gb_s"] == pytest.approx(steps_s * step_bytes / 1e9)
        assert r["pct_floor"] == pytest.approx(
            100 * r["achieved_gb_s"] / report["machine"]["read_bandwidth_gb_s"]
        )
    assert rows[0]["row0_tokens"] == rows[1]["row0_tokens"]  # greedy, row 0 alone or batched
    skipped = [(s["engine"], s["batch"]) for s in report["skipped"]]
    assert skipped == [("llama.cpp", 1), ("llama.cpp", 2)]
    assert all(s["reason"].startswith("no GGUF of tiny-llama") for s in report["skipped"])
    assert "skipped llama.cpp (tiny-llama fp32 batch 2): no GGUF" in capsys.readouterr().out


def test_measure_rotates_rounds_and_reports_median_and_range(bench: Path) -> None:
    import decode_cpu

    calls: list[str] = []
    per_token = {"a": [0.01, 0.02, 0.01], "b": [0.02, 0.02, 0.04]}  # per round of n tokens

    def peer(name: str, first: float):  # seconds = first + (n - 1) * per_token of this round
        def run(n: int) -> float:
            calls.append(name)
            done = sum(1 for c in calls if c == name) - 1  # 1 warm-up, then 2 per round
            step = per_token[name][max(0, (done - 1) // 2)]
            return first + (n - 1) * step

        return run

    results = decode_cpu.measure(
        {"a": peer("a", 0.1), "b": peer("b", 0.2)}, n=11, rounds=3, batch=2
    )
    # Warm-up (a, b), then round r starts at engine r mod 2: a a b b, b b a a, a a b b.
    assert calls == ["a", "b", *"aabb", *"bbaa", *"aabb"]
    # 10 decode steps for 2 rows: 2 * 10 / (10 * step) tok/s per round.
    assert results["a"]["decode_tok_s"] == pytest.approx(
        {"median": 200.0, "min": 100.0, "max": 200.0}
    )
    assert results["b"]["decode_tok_s"] == pytest.approx(
        {"median": 100.0, "min": 50.0, "max": 100.0}
    )
    assert results["a"]["ttft_s"]["median"] == pytest.approx(0.1)
    decode_cpu.ratios(results, ours="a")
    # Per round a/b: 200/100, 100/100, 200/50.
    assert results["b"]["tinyllm_speedup"] == pytest.approx({"median": 2.0, "min": 1.0, "max": 4.0})
    assert results["b"]["tinyllm_ttft_ratio"]["median"] == pytest.approx(0.5)


def test_decode_benchmark_runs_each_engine_in_its_own_process(
    bench: Path,
    tiny_llama_bundle: Path,
    tmp_path: Path,
    native_problem: Callable[[Callable[[], object]], str],
) -> None:
    """The harness end to end on the tiny model: tinyllm, the native runtime (when
    ``make cpp`` has built it) and transformers in their own processes with the settings
    they were given, and peers that cannot run recorded."""
    import decode_cpu
    import peers

    not_built = native_problem(native.library_path)
    options = ["--threads", "1", "--spin", "off", "--new-tokens", "6", "--rounds", "2"]
    args = decode_cpu.parse(["--out-dir", str(tmp_path), *options])
    engines = ["tinyllm", "tinyllm-cpp", "tinyllm-ids", "hf-generate", "llama.cpp"]
    paths = peers.prepare_from(tiny_llama_bundle, "tiny", "fp32", engines, tmp_path)
    assert paths["llama.cpp"] == "no GGUF of tiny (only SmolLM2 ships one)"
    paths["onnxruntime-genai"] = tmp_path / "no-such-model"  # installed or not, it cannot start
    prompts = [[5, 6, 7, 8, 9], [9, 8, 7, 6, 5]]
    results, skipped = decode_cpu.run_case(paths, prompts, args)
    ran = {"tinyllm", "tinyllm-ids", "hf-generate"} | (set() if not_built else {"tinyllm-cpp"})
    assert set(results) == ran
    if not_built:
        assert skipped["tinyllm-cpp"] == not_built  # says how to build it
    assert skipped["llama.cpp"].startswith("no GGUF")
    assert skipped["onnxruntime-genai"].startswith("could not start: ")
    ours, hf = results["tinyllm"], results["hf-generate"]
    assert ours["settings"]["intra_op_num_threads"] == 1
    assert ours["settings"]["allow_spinning"] == "0"
    assert hf["settings"]["torch_num_threads"] == 1
    assert hf["settings"]["OMP_WAIT_POLICY"] == "PASSIVE"
    for result in results.values():
        assert len(result["rounds"]["decode_tok_s"]) == 2
        assert 0 < result["decode_tok_s"]["min"] <= result["decode_tok_s"]["max"]
        assert result["peak_rss_mb"] >= result["base_rss_mb"] > 0
        assert len(result["row0_tokens"]) == 6
    # The same fp32 weights in two engines: the same greedy tokens.
    assert hf["row0_prefix_same_as_tinyllm"] == 6
    # The engine exported with greedy ids reads ids, not logits: the same tokens.
    assert results["tinyllm-ids"]["row0_prefix_same_as_tinyllm"] == 6
    assert results["tinyllm-ids"]["tinyllm_speedup"]["median"] > 0
    assert "tinyllm_speedup" not in ours and hf["tinyllm_speedup"]["median"] > 0
    # Row 0 alone gives the tokens it gave in the batch.
    alone, _ = decode_cpu.run_case({"tinyllm": paths["tinyllm"]}, prompts[:1], args)
    assert alone["tinyllm"]["row0_tokens"] == ours["row0_tokens"]
    report = {
        "machine": {"read_bandwidth_gb_s": 1.0},
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": [
            {"model": "tiny", "precision": "fp32", "batch": 2, "engine": e, **r}
            | {"pct_floor": 1.0, "achieved_gb_s": 0.5}
            for e, r in results.items()
        ],
        "skipped": [
            {"model": "tiny", "precision": "fp32", "batch": 2, "engine": e, "reason": r}
            for e, r in skipped.items()
        ],
    }
    text = decode_cpu.table(report)
    assert "every engine 1 threads, spinning off" in text
    assert "    0.5      1%" in text  # weight GB/s and % floor
    assert "skipped llama.cpp (tiny fp32 batch 2): no GGUF of tiny" in text
    if not_built:
        pytest.skip(f"tinyllm-cpp not measured (the rest passed): {not_built}")
    cpp = results["tinyllm-cpp"]
    # The same engine, run by libtinyllm: the same greedy tokens, with the thread count
    # given; spinning cannot be set through the C API, and the settings say so.
    assert cpp["row0_tokens"] == ours["row0_tokens"]
    assert cpp["row0_prefix_same_as_tinyllm"] == 6
    assert cpp["settings"]["intra_op_num_threads"] == 1
    assert cpp["settings"]["allow_spinning"].startswith("not settable through the C API")
    assert cpp["settings"]["python_onnxruntime_imported"] is False
    assert cpp["tinyllm_speedup"]["median"] > 0
    assert "tinyllm-cpp" in text


def test_worker_reports_a_failed_start(bench: Path, tmp_path: Path) -> None:
    spec = {"engine": "tinyllm", "path": str(tmp_path / "missing.tllm"), "prompts": [[1, 2]]}
    spec |= {"max_new": 2, "threads": 1, "spin": True}
    out = subprocess.run(
        [sys.executable, str(bench / "decode_worker.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 3
    assert "missing.tllm" in json.loads(out.stdout)["error"]


def test_native_worker_reports_a_missing_library(bench: Path, tmp_path: Path) -> None:
    spec = {"engine": "tinyllm-cpp", "path": str(tmp_path / "e.tllm"), "prompts": [[1, 2]]}
    spec |= {"max_new": 2, "threads": 1, "spin": True}
    env = dict(os.environ, TINYLLM_NATIVE_LIBRARY=str(tmp_path / "libtinyllm.so"))
    out = subprocess.run(
        [sys.executable, str(bench / "decode_worker.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    assert out.returncode == 3
    error = json.loads(out.stdout)["error"]
    assert "the native runtime is not built" in error and "libtinyllm.so" in error


FAKE_WORKER = """#!/bin/bash
[ "$CRASH" = start ] && kill -SEGV $$
echo '{"ready": true, "settings": {}, "load_s": 0.0, "base_rss": 0}'
while read -r cmd n; do
  case $cmd in
    gen) [ "$CRASH" = gen ] && { echo "ggml: about to crash" >&2; kill -SEGV $$; }
         echo '{"seconds": 0.01, "tokens": [7]}';;
    quit) echo '{"peak_rss": 0, "rss": 0}'; exit 0;;
  esac
done
"""


def test_decode_harness_reports_a_segfaulting_peer(
    bench: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer whose worker dies of SIGSEGV at start or while measuring (llama.cpp's batch
    runner did, in llama_decode) is recorded with the signal; the others are measured."""
    import decode_cpu

    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_WORKER)
    fake.chmod(0o755)

    def start(engine: str, path: Path, prompts: list[list[int]], args: Any, _: str = "") -> Any:
        crash = {"crash-start": "start", "crash-gen": "gen"}.get(engine, "")
        env = dict(os.environ, CRASH=crash)
        spec = {"engine": engine, "path": str(path), "prompts": prompts}
        return decode_cpu.Worker(spec, str(fake), env, tmp_path / f"{engine}.log")

    monkeypatch.setattr(decode_cpu, "start", start)
    args = decode_cpu.parse(["--out-dir", str(tmp_path), "--rounds", "2", "--new-tokens", "3"])
    paths: dict[str, Path | str] = {e: tmp_path for e in ("ok", "crash-start", "crash-gen")}
    results, skipped = decode_cpu.run_case(paths, [[1, 2]], args)
    assert set(results) == {"ok"} and len(results["ok"]["rounds"]["ttft_s"]) == 2
    assert results["ok"]["row0_tokens"] == [7]
    assert skipped["crash-start"].startswith("could not start: worker killed by SIGSEGV")
    assert "a crash in the engine's native code" in skipped["crash-start"]
    assert skipped["crash-gen"].startswith("failed while measuring: worker killed by SIGSEGV")
    assert "ggml: about to crash" in skipped["crash-gen"]
    only, skipped = decode_cpu.run_case({"crash-gen": tmp_path}, [[1, 2]], args)
    assert only == {} and "SIGSEGV" in skipped["crash-gen"]


def test_llamacpp_batch_runner_through_the_harness(bench: Path, tmp_path: Path) -> None:
    """llama.cpp's batch runner (benchmarks/llamacpp_batch.py) in its worker, through the
    harness: two rows of SmolLM2's shipped GGUF, greedy, the same tokens every round."""
    pytest.importorskip(
        "llama_cpp",
        reason="llama-cpp-python is not installed (pip install -e '.[bench]'), so the "
        "llama.cpp peer cannot run",
    )
    import decode_cpu

    from tinyllm.presets import smollm2_gguf_path

    args = decode_cpu.parse(["--out-dir", str(tmp_path), "--rounds", "2", "--new-tokens", "4"])
    args.threads = 1
    prompts = [[1, 504, 3458, 314], [1, 504, 3458, 314]]
    results, skipped = decode_cpu.run_case({"llama.cpp": smollm2_gguf_path()}, prompts, args)
    assert skipped == {}  # a crash would be here, with the signal and the log's last lines
    r = results["llama.cpp"]
    assert r["settings"]["n_seq_max"] == 2 and r["settings"]["n_threads"] == 1
    assert len(r["row0_tokens"]) == 4 and all(0 <= t < 49152 for t in r["row0_tokens"])
    assert len(r["rounds"]["decode_tok_s"]) == 2 and r["decode_tok_s"]["median"] > 0
