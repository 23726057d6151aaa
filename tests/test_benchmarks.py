"""The benchmark scripts import, parse their options, and compute what they claim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tinyllm.errors import TinyLLMError
from tinyllm.runtime import native

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_decode_benchmark_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """decode_cpu.py's main on tiny-llama at batch 1 and 2: figures per row, the floor
    figures from the bytes it counted, row 0's tokens the same in both batches, and a peer
    that cannot run (llama.cpp has no GGUF of tiny-llama) reported as skipped."""
    monkeypatch.syspath_prepend(str(BENCH))
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


def test_decode_gpu_without_cuda_says_so_and_fails() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has ONNX Runtime's CUDA provider")
    out = subprocess.run(
        [sys.executable, str(BENCH / "decode_gpu.py"), "--precision", "int4"],
        capture_output=True,
        text=True,
        cwd=BENCH.parent,
    )
    assert out.returncode == 2, out.stderr
    assert "needs a CUDA GPU and ONNX Runtime's CUDAExecutionProvider" in out.stderr
    assert "CPUExecutionProvider" in out.stderr and "docs/gpu.md" in out.stderr
    assert not out.stdout


def test_decode_gpu_reports_an_engine_it_cannot_prepare_and_runs_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a GPU machine without TensorRT (or onnxruntime-genai), the CUDA engine's numbers
    still come out; the missing ones get a row saying why (no GPU needed: the engines'
    preparation and runs are replaced)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import decode_gpu

    from tinyllm.errors import MissingDependencyError

    def prepare(engine: str, name: str, precision: str, out: Path, block: int) -> Path:
        if engine == "tinyllm-tensorrt":
            raise MissingDependencyError("--target tensorrt cannot build here: no libnvinfer")
        if engine == "onnxruntime-genai":
            raise decode_gpu.NotRun("onnxruntime-genai's model builder has no int8 precision")
        return out / "cuda.tllm"

    ran: list[tuple[str, int]] = []

    def run(engine: str, path: Path, prompts: list, args: Any) -> dict:
        ran.append((engine, len(prompts)))
        return {"settings": {}, "decode_tok_s": [100.0 * len(prompts), 90.0 * len(prompts)]}

    monkeypatch.setattr(decode_gpu, "cuda_problem", lambda: None)
    monkeypatch.setattr(decode_gpu, "prepare", prepare)
    monkeypatch.setattr(decode_gpu, "run", run)
    import tinyllm

    tinyllm.import_model("tiny-llama", tmp_path / "tiny-llama.tllm")  # its vocabulary sizes prompts
    argv = ["decode_gpu.py", "--precision", "int8", "--batch", "4", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--model", "tiny-llama"])
    assert decode_gpu.main() == 0
    assert ran == [("tinyllm-cuda", 1), ("tinyllm-cuda", 4)]
    out = capsys.readouterr().out
    assert "not run: MissingDependencyError: --target tensorrt cannot build here" in out
    assert "not run: NotRun: onnxruntime-genai's model builder has no int8" in out
    assert "95 [90-100]" in out and "380 [360-400]" in out
    runs = json.loads((tmp_path / "decode_gpu.json").read_text())["runs"]
    assert [r["engine"] for r in runs] == ["tinyllm-cuda", "tinyllm-cuda", *decode_gpu.ENGINES[1:]]
    assert "libnvinfer" in runs[2]["error"]


@pytest.mark.gpu
def test_decode_gpu_benchmark_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """decode_gpu.py's main on tiny-llama, fp16 on CUDA, batch 1 and 2: a rate per round
    for each batch; an engine that cannot load is recorded with its error."""
    import argparse

    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.chdir(tmp_path)  # the models and the JSON go under ./out/bench
    import decode_gpu

    argv = ["--model", "tiny-llama", "--precision", "fp16", "--batch", "2"]
    argv += ["--prompt-tokens", "4", "--tokens", "4", "--rounds", "2", "--engines", "tinyllm-cuda"]
    assert decode_gpu.main(argv) == 0
    results = json.loads((tmp_path / "out" / "bench" / "decode_gpu.json").read_text())
    runs = results["runs"]
    assert [(r["engine"], r["batch"]) for r in runs] == [("tinyllm-cuda", 1), ("tinyllm-cuda", 2)]
    for r in runs:
        assert r["settings"]["device"] == "cuda" and len(r["decode_tok_s"]) == 2, r
        assert min(r["decode_tok_s"]) > 0
    spec = argparse.Namespace(tokens=4, rounds=1)
    broken = decode_gpu.run("tinyllm-cuda", tmp_path / "missing.tllm", [[10, 11]], spec)
    assert "missing.tllm" in broken["error"][0], broken


def test_measure_rotates_rounds_and_reports_median_and_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
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
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The harness end to end on the tiny model: tinyllm, the native runtime (when
    ``make cpp`` has built it) and transformers in their own processes with the settings
    they were given, and peers that cannot run recorded."""
    monkeypatch.syspath_prepend(str(BENCH))
    import decode_cpu
    import peers

    try:
        native.library_path()
        not_built = ""
    except TinyLLMError as e:
        if os.environ.get("TINYLLM_NATIVE_REQUIRED"):
            pytest.fail(str(e))
        not_built = str(e)
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


def test_worker_reports_a_failed_start(tmp_path: Path) -> None:
    spec = {"engine": "tinyllm", "path": str(tmp_path / "missing.tllm"), "prompts": [[1, 2]]}
    spec |= {"max_new": 2, "threads": 1, "spin": True}
    out = subprocess.run(
        [sys.executable, str(BENCH / "decode_worker.py"), json.dumps(spec)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 3
    assert "missing.tllm" in json.loads(out.stdout)["error"]


def test_native_worker_reports_a_missing_library(tmp_path: Path) -> None:
    spec = {"engine": "tinyllm-cpp", "path": str(tmp_path / "e.tllm"), "prompts": [[1, 2]]}
    spec |= {"max_new": 2, "threads": 1, "spin": True}
    env = dict(os.environ, TINYLLM_NATIVE_LIBRARY=str(tmp_path / "libtinyllm.so"))
    out = subprocess.run(
        [sys.executable, str(BENCH / "decode_worker.py"), json.dumps(spec)],
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer whose worker dies of SIGSEGV at start or while measuring (llama.cpp's batch
    runner did, in llama_decode) is recorded with the signal; the others are measured."""
    monkeypatch.syspath_prepend(str(BENCH))
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


def test_llamacpp_batch_runner_through_the_harness(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp's batch runner (benchmarks/llamacpp_batch.py) in its worker, through the
    harness: two rows of SmolLM2's shipped GGUF, greedy, the same tokens every round."""
    pytest.importorskip(
        "llama_cpp",
        reason="llama-cpp-python is not installed (pip install -e '.[bench]'), so the "
        "llama.cpp peer cannot run",
    )
    from tinyllm.presets import smollm2_gguf_path

    monkeypatch.syspath_prepend(str(BENCH))
    import decode_cpu

    args = decode_cpu.parse(["--out-dir", str(tmp_path), "--rounds", "2", "--new-tokens", "4"])
    args.threads = 1
    prompts = [[1, 504, 3458, 314], [1, 504, 3458, 314]]
    results, skipped = decode_cpu.run_case({"llama.cpp": smollm2_gguf_path()}, prompts, args)
    assert skipped == {}  # a crash would be here, with the signal and the log's last lines
    r = results["llama.cpp"]
    assert r["settings"]["n_seq_max"] == 2 and r["settings"]["n_threads"] == 1
    assert len(r["row0_tokens"]) == 4 and all(0 <= t < 49152 for t in r["row0_tokens"])
    assert len(r["rounds"]["decode_tok_s"]) == 2 and r["decode_tok_s"]["median"] > 0


def test_pruning_benchmark_table(monkeypatch: pytest.MonkeyPatch) -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH / "pruning.py"), "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "--heal-steps" in out.stdout and "--unhealed" in out.stdout
    monkeypatch.syspath_prepend(str(BENCH))
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


def test_pruning_benchmark_end_to_end(tiny_llama_bundle: Path, tmp_path: Path) -> None:
    """pruning.py on tiny-llama: pruned and healed children at the ratio, each scored on
    every built-in task beside the parent, and the JSON record."""
    out = subprocess.run(
        [
            sys.executable, str(BENCH / "pruning.py"), str(tiny_llama_bundle), "--ratio", "0.8",
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


def test_engine_load_benchmark_end_to_end(
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """engine_load.py's main: every mode's seconds, the hash cache filled for the warm
    rounds; an engine file changed after export fails the hashed loads."""
    import tinyllm
    from tinyllm import integrity

    monkeypatch.syspath_prepend(str(BENCH))
    import engine_load

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    monkeypatch.setattr(integrity, "RACY_S", 0.0)  # remember digests of the fresh engine
    monkeypatch.setenv("TINYLLM_HASH_CACHE", str(tmp_path / "unused.json"))  # main sets its own
    out = tmp_path / "load.json"
    engine_load.main([str(bundle.path), "--repeats", "2", "--json", str(out)])
    report = json.loads(out.read_text())[str(bundle.path)]
    assert set(report) == {"size", "cold", "warm"}
    for row in report.values():
        assert 0 < row["wall_min"] <= row["wall_median"] and row["cpu_min"] > 0
    assert Path(os.environ["TINYLLM_HASH_CACHE"]).is_file()  # warm rounds had digests to reuse
    with pytest.raises(SystemExit):
        engine_load.main([str(bundle.path), "--modes", "size,lukewarm"])
    assert "unknown mode 'lukewarm'" in capsys.readouterr().err
    weights = max((bundle.path / "engines").glob("*/model.onnx*"), key=lambda f: f.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern changed
    weights.write_bytes(bytes(data))
    with pytest.raises(TinyLLMError, match="sha256"):
        engine_load.main([str(bundle.path), "--modes", "cold", "--repeats", "1"])


def test_profile_overhead_benchmark_end_to_end(
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """profile_overhead.py's main (--json): the overhead inside its range over the rounds,
    both latencies positive, the recorder a small share of the loop's time."""
    import tinyllm

    monkeypatch.syspath_prepend(str(BENCH))
    import profile_overhead

    bundle, _ = tinyllm.export(tiny_llama_bundle, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=64)
    profile_overhead.main(
        [
            str(bundle.path), "--rounds", "2", "--requests", "4", "--concurrency", "2",
            "--prompt-len", "8", "--new-tokens", "4", "--threads", "1", "--json",
        ]
    )  # fmt: skip
    r = json.loads(capsys.readouterr().out)
    assert r["rounds"] == 2 and len(r["per_round"]) == 2
    assert r["overhead_min"] <= r["overhead"] <= r["overhead_max"]
    assert r["median_latency_ms_unprofiled"] > 0 and r["median_latency_ms_recorded"] > 0
    assert 0 < r["recorder_share_of_busy"] < 0.5
    assert r["workload"]["prompt_tokens"] == 8 and r["workload"]["load"] == "concurrency 2"


def test_memory_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """memory_cpu.py's main on tiny-llama: a fresh process per batch, its RSS figures in
    order and the engine's weight files; a failed case and a missing native runtime are
    errors that say so."""
    monkeypatch.syspath_prepend(str(BENCH))
    import memory_cpu

    out = tmp_path / "memory.json"
    memory_cpu.main(
        [
            "--model", "tiny-llama", "--precision", "fp32", "--engines", "tinyllm",
            "--batches", "1,2", "--prompt-tokens", "4", "--new-tokens", "4",
            "--out-dir", str(tmp_path), "--json", str(out),
        ]
    )  # fmt: skip
    results = json.loads(out.read_text())
    assert [(r["engine_name"], r["batch"]) for r in results] == [("tinyllm", 1), ("tinyllm", 2)]
    engine = tmp_path / "tiny-llama-fp32.tllm"
    files = sum(f.stat().st_size for f in (engine / "engines").glob("*/model.onnx*"))
    for r in results:
        assert 0 < r["import"] <= r["loaded"] <= r["peak"]
        assert r["engine"] == r["peak"] - r["import"] and r["load_s"] > 0
        assert r["weights"] == files > 0
    with pytest.raises(SystemExit, match="tinyllm batch 2 failed"):
        memory_cpu.run_case("tinyllm", tmp_path / "missing.tllm", batch=2, prompt=8, new=4)
    monkeypatch.setenv("TINYLLM_NATIVE_LIBRARY", str(tmp_path / "libtinyllm.so"))
    with pytest.raises(SystemExit, match="the native runtime is not built"):
        memory_cpu.main(["--engines", "tinyllm-native", "--out-dir", str(tmp_path)])


def test_speculative_benchmark_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
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
    tiny_llama_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """speculative.py's main on tiny-llama serving booking and rewrite (fp32): the plain
    and speculating engines give identical tokens and every rate is positive; a
    speculating engine that answers differently is reported as not identical."""
    import tinyllm

    monkeypatch.syspath_prepend(str(BENCH))
    import speculative

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


def test_tool_latency_benchmark_with_scripted_peers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
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
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tool_latency.py's main, ``--quick`` (tiny-llama with the calculator): every peer
    answers every input; the pipeline is all tool, ``call`` runs none, ``tools`` runs
    one per request; ``stepwise`` takes more engine runs a call than ``call`` (forced
    text written in verify steps); a task without tools is refused by name."""
    monkeypatch.syspath_prepend(str(BENCH))
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


def test_trl_speed_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trl_speed.py's main: both backends train the tiny model for real, for SFT and GRPO;
    the JSON has the best rate of each, and each rate fits inside the call's wall time."""
    import time

    monkeypatch.syspath_prepend(str(BENCH))
    import trl_speed

    runs: list[tuple[str, int, float, float]] = []  # backend, steps, rate, seconds outside
    real = trl_speed.steps_per_second

    def timed(bundle: Path, backend: str, steps: int, batch: int, method: str = "sft") -> float:
        start = time.perf_counter()
        rate = real(bundle, backend, steps, batch, method)
        runs.append((backend, steps, rate, time.perf_counter() - start))
        return rate

    monkeypatch.setattr(trl_speed, "steps_per_second", timed)
    out = tmp_path / "trl.json"
    for method in ("sft", "grpo"):
        runs.clear()
        trl_speed.main(
            [
                "--bundle", str(tiny_llama_bundle), "--steps", "2", "--batch-size", "2",
                "--rounds", "1", "--method", method, "--json", str(out),
            ]
        )  # fmt: skip
        record = json.loads(out.read_text())
        assert record["settings"]["method"] == method
        best = record["steps_per_s"]
        # A trl warm-up, then own and trl in turn each round; the best rate of each backend.
        assert [(b, n) for b, n, _, _ in runs] == [("trl", 2), ("own", 2), ("trl", 2)]
        assert best == {b: max(r for b2, _, r, _ in runs[1:] if b2 == b) for b in ("own", "trl")}
        assert record["trl_over_own"] == pytest.approx(best["trl"] / best["own"])
        for _, steps, rate, seconds in runs:
            # The timed span lies inside the call: at least steps / (the call's wall time).
            assert steps / seconds <= rate < float("inf")


def test_decode_parity_benchmark_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decode_parity.py's main on tiny-llama: the fp32 engine and transformers share the
    weights, so every prompt gives the same greedy tokens; an engine that stops a token
    early is counted as different (the comparison can fail)."""
    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.chdir(tmp_path)  # the models and the JSON go under ./out/bench
    import decode_parity

    argv = ["--models", "tiny-llama", "--prompts", "2", "--new-tokens", "4"]
    decode_parity.main(argv)
    record = tmp_path / "out" / "bench" / "parity-tiny-llama.json"
    assert json.loads(record.read_text()) == {"prompts": 2, "identical": 2, "new_tokens": 4}
    real = decode_parity.GenerationConfig

    def one_short(max_new_tokens: int) -> Any:
        return real(max_new_tokens=max_new_tokens - 1)

    monkeypatch.setattr(decode_parity, "GenerationConfig", one_short)
    decode_parity.main(argv)
    assert json.loads(record.read_text())["identical"] == 0


def test_labelling_benchmark_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """labelling.py's main: a live `tinyllm serve` of tiny-qwen2 labels every input at
    each concurrency, journals and all; --task without --bundle is refused."""
    import time

    monkeypatch.syspath_prepend(str(BENCH))
    import labelling

    out, work = tmp_path / "labelling.json", tmp_path / "work"
    start = time.perf_counter()
    labelling.main(
        [
            "--inputs", "4", "--concurrency", "1,2", "--rounds", "1", "--max-batch", "2",
            "--work", str(work), "--json", str(out),
        ]
    )  # fmt: skip
    wall = time.perf_counter() - start
    rates = json.loads(out.read_text())
    assert list(rates) == ["1", "2"]
    for c, rate in rates.items():
        # 4 inputs in less than the whole run (build, start and warm-up included).
        assert 4 / wall < rate < float("inf")
        stats = json.loads((work / f"c{c}" / "sentiment.stats.json").read_text())
        assert stats["inputs"] == stats["labelled"] == 4, stats
    assert len(labelling.inputs(5)) == len(set(labelling.inputs(5))) == 5
    assert len(set(labelling.task_inputs("booking", 3))) == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        labelling.main(["--task", "booking"])
    assert refused.value.code == 2 and "give --bundle too" in capsys.readouterr().err


def test_quantization_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """quantization.py's main, steps 1 to 3 on the tiny model with two built-in tasks and
    three methods, the float model and RTN evaluated on one test example; fewer than two
    tasks and an unknown task are refused."""
    monkeypatch.syspath_prepend(str(BENCH))
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


def test_quantization_summary_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mean relative drop leaves out the tasks the float model scores 0 on."""
    import argparse

    monkeypatch.syspath_prepend(str(BENCH))
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


def test_cpp_task_parity_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cpp_task_parity.py's main: Python and C++ answers of a tiny two-task bundle agree;
    a C++ side that answers differently is counted as a mismatch (the comparison can
    fail)."""
    import tinyllm

    try:
        native.library_path()
    except TinyLLMError as e:
        if os.environ.get("TINYLLM_NATIVE_REQUIRED"):
            pytest.fail(str(e))
        pytest.skip(f"the C++ runtime is not built: {e}")
    monkeypatch.syspath_prepend(str(BENCH))
    import cpp_task_parity

    from tinyllm.runtime.nativetasks import NativeTasks

    suite = tinyllm.api.load_tasks()
    tasks = [suite.task(n) for n in ("sentiment", "intent")]
    child = tinyllm.api.add_tasks(tiny_llama_bundle, tmp_path / "t.tllm", tasks, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=256)
    out = tmp_path / "parity.json"
    cpp_task_parity.main([str(bundle.path), "--inputs", "3", "--threads", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert set(r["tasks"]) == {"sentiment", "intent"}
    for row in r["tasks"].values():
        assert row == {"requests": 3, "tokens": 3, "values": 3, "mismatch": None}

    real_run = NativeTasks.run

    def shifted(self: NativeTasks, requests: Any, *a: Any, **kw: Any) -> Any:
        import dataclasses

        outs = real_run(self, requests, *a, **kw)
        return [dataclasses.replace(o, token_ids=(*o.token_ids, 0), value="x") for o in outs]

    monkeypatch.setattr(NativeTasks, "run", shifted)
    r = cpp_task_parity.compare(bundle.path, None, 2, 1)
    for row in r["tasks"].values():
        assert (row["tokens"], row["values"]) == (0, 0) and row["mismatch"]["cpp"] is not None


def test_cpp_process_benchmark_end_to_end(
    tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cpp_process.py's main: tinyllm-run and a Python process answer the same request;
    times and peak RSS are reported per side; runtimes that answer differently are an
    error."""
    import argparse

    import tinyllm

    try:
        native.tool_path("tinyllm-run")
    except TinyLLMError as e:
        if os.environ.get("TINYLLM_NATIVE_REQUIRED"):
            pytest.fail(str(e))
        pytest.skip(f"the C++ runtime is not built: {e}")
    monkeypatch.syspath_prepend(str(BENCH))
    import cpp_process

    suite = tinyllm.api.load_tasks()
    intent = [suite.task("intent")]
    child = tinyllm.api.add_tasks(tiny_llama_bundle, tmp_path / "t.tllm", intent, {})
    bundle, _ = tinyllm.export(child.path, "onnx-cpu", tmp_path / "e.tllm", max_seq_len=512)
    out = tmp_path / "cpp-process.json"
    argv = [str(bundle.path), "--task", "intent", "--text", "wake me at 7", "--rounds", "1"]
    argv += ["--threads", "1", "--max-batch", "2", "--max-seq-len", "512", "--json", str(out)]
    cpp_process.main(argv)
    r = json.loads(out.read_text())
    assert r["answer"]
    for side in ("python", "cpp"):
        assert r["sides"][side]["seconds"]["median"] > 0
        assert r["sides"][side]["rss_mib"]["median"] > 10
    assert r["cpp_over_python"]["rss_mib"]["median"] > 0

    real = cpp_process.commands

    def other_answer(a: argparse.Namespace) -> dict[str, list[str]]:
        cmds = real(a)
        cmds["python"] = [sys.executable, "-c", "print('something else')"]
        return cmds

    monkeypatch.setattr(cpp_process, "commands", other_answer)
    with pytest.raises(RuntimeError, match="answered differently"):
        cpp_process.main(argv)


def test_http_soak_benchmark_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """http_soak.py's main, the 30-second version of the HTTP soak (docs/reliability.md has
    the 30-minute run):
    every request counted once by the server, only expected outcomes, the churned task both
    served and refused, no fd leak; the slope and outcome checks fail on a leak and on a
    server error. (RSS still grows while warming up over a minute: its slope is judged
    on the long run.)"""
    monkeypatch.syspath_prepend(str(BENCH))
    import http_soak

    out = tmp_path / "soak.json"
    with pytest.raises(SystemExit) as exited:
        http_soak.main(
            [
                "--minutes", "0.5", "--clients", "3", "--churn-s", "2", "--sample-s", "1",
                "--interval-s", "6", "--json", str(out),
            ]
        )  # fmt: skip
    r = json.loads(out.read_text())
    slope_ok = r["rss_slope_mib_per_min"] < http_soak.SLOPE_LIMIT
    assert r["passed"] is slope_ok and exited.value.code == (0 if slope_ok else 1)
    assert r["sent"] > 20 and r["lost_or_duplicated"] == 0 and r["unexpected"] == {}, r
    kinds = {k.split()[0] for k in r["outcomes"]}
    assert kinds == {"task", "stream", "drop", "churned", "bad"}
    assert r["outcomes"].get("bad 404", 0) > 0 and len(r["samples"]) >= 5
    assert r["fds"]["last"] <= r["fds"]["after_warmup"] + 2
    assert r["rss_slope_mib_per_hour"] == pytest.approx(60 * r["rss_slope_mib_per_min"])
    rows = r["intervals"]
    assert len(rows) >= 4 and sum(row["requests"] for row in rows) == r["sent"]
    assert sum(sum(row["outcomes"].values()) for row in rows) == r["sent"]
    assert all(row["unexpected"] == 0 for row in rows) and r["server_errors"] == []
    timed = [row for row in rows if row["p50_ms"] is not None]
    assert timed and all(0 < row["p50_ms"] <= row["p99_ms"] for row in timed)


def test_http_soak_slope_flags_a_leak_and_intervals_count_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The slope fit: flat and a warm-up step stay under the limit, a leak of 1.5 MiB/min
    under GC-like noise is over it; the interval table's percentiles and counts."""
    import math

    monkeypatch.syspath_prepend(str(BENCH))
    import http_soak

    flat = [(60.0 * i, 100.0) for i in range(10)]
    leak = [(60.0 * i, 100.0 + 2.0 * i) for i in range(10)]  # 2 MiB a minute
    assert http_soak.slope_mib_per_min(flat) == pytest.approx(0.0)
    assert http_soak.slope_mib_per_min(leak) == pytest.approx(2.0)
    assert http_soak.slope_mib_per_min(leak) > http_soak.SLOPE_LIMIT
    assert not http_soak.expected("task 500") and not http_soak.expected("drop error ReadTimeout")
    assert http_soak.expected("churned 404") and not http_soak.expected("task 404")
    saw = [(5.0 * i, 400 + 8 * math.sin(i) + (30 if i % 7 == 0 else 0)) for i in range(360)]
    leak_noisy = [(t, r + 1.5 * t / 60) for t, r in saw]  # 30 minutes, sampled every 5 s
    half = [x for x in leak_noisy if x[0] >= 900]
    assert http_soak.slope_mib_per_min(half) == pytest.approx(1.5, abs=0.1)
    assert http_soak.slope_mib_per_min(half) > http_soak.SLOPE_LIMIT
    assert abs(http_soak.slope_mib_per_min([x for x in saw if x[0] >= 900])) < 0.1
    with pytest.raises(ValueError, match="two samples"):
        http_soak.slope_mib_per_min([(0.0, 1.0)])
    records = [(0.5, "task 200", 0.1), (1.5, "task 200", 0.3), (1.2, "stream 200", 0.2)]
    records += [(0.7, "drop 200", 9.0), (2.5, "task 500", 0.05), (4.1, "bad 404", 0.01)]
    rows = http_soak.intervals(records, 2.0)
    assert [row["requests"] for row in rows] == [4, 1, 1]
    assert rows[0]["p50_ms"] == pytest.approx(200) and rows[0]["p99_ms"] == pytest.approx(300)
    assert rows[1]["unexpected"] == 1 and rows[1]["p50_ms"] is None
    assert rows[2] == {"start_s": 4.0, "requests": 1, "outcomes": {"bad 404": 1},
                       "unexpected": 0, "p50_ms": None, "p99_ms": None}  # fmt: skip
    assert http_soak.percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert http_soak.percentile([3.0, 1.0, 2.0, 4.0], 99) == 4.0
    with pytest.raises(ValueError, match="positive"):
        http_soak.intervals(records, 0)


def test_fsync_cost_benchmark_turns_fsync_off_and_measures_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The labelling and bundle workloads fsync; inside fsync_off nothing does; the
    report has both modes and their ratio."""
    monkeypatch.syspath_prepend(str(BENCH))
    import fsync_cost

    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    for name, work in (
        ("label", fsync_cost.label_work(tmp_path, 32, 8)),
        ("bundle", fsync_cost.bundle_work(tmp_path)),
    ):
        (tmp_path / f"{name}-on").mkdir()
        work(tmp_path / f"{name}-on")
        on = len(calls)
        assert on > 0, name
        with fsync_cost.fsync_off():
            (tmp_path / f"{name}-off").mkdir()
            work(tmp_path / f"{name}-off")
        assert len(calls) == on, name  # no fsync reached the real one
        calls.clear()
    out = tmp_path / "fsync.json"
    argv = ["--rounds", "2", "--inputs", "16", "--batch-size", "8", "--dir", str(tmp_path)]
    fsync_cost.main([*argv, "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["settings"]["inputs"] == 16 and set(report["results"]) == {"label", "bundle"}
    for r in report["results"].values():
        assert set(r["seconds"]) == {"fsync", "no_fsync"}
        assert all(0 < s["min"] <= s["median"] <= s["max"] for s in r["seconds"].values())
        assert r["fsync_over_no_fsync"]["median"] > 0


def test_http_soak_reads_the_total_once_nothing_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The soak's server total waits for in-flight requests to settle (a fixed pause read it
    one short); after its deadline it takes the total as it is."""
    monkeypatch.syspath_prepend(str(BENCH))
    import http_soak

    readings = iter([(5, 2), (6, 1), (7, 0), (8, 0)])
    monkeypatch.setattr(http_soak, "server_counts", lambda url: next(readings))
    monkeypatch.setattr(http_soak.time, "sleep", lambda s: None)
    assert http_soak.settled_total("http://x/v1") == 7
    monkeypatch.setattr(http_soak, "server_counts", lambda url: (3, 1))  # never settles
    assert http_soak.settled_total("http://x/v1", wait_s=0.0) == 3


def test_http_soak_client_records_a_request_that_fails_in_any_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client exception that is not an HTTP error still becomes an outcome (the uncounted
    request of an earlier soak), so sent and recorded always agree."""
    import threading
    import time

    import httpx

    monkeypatch.syspath_prepend(str(BENCH))
    import http_soak

    sent: list[str] = []

    class Broken(httpx.Client):
        def post(self, *args: Any, **kwargs: Any) -> Any:
            sent.append("post")
            raise ValueError("not an httpx error")

        def stream(self, *args: Any, **kwargs: Any) -> Any:
            sent.append("stream")
            raise KeyError("neither is this")

    monkeypatch.setattr(httpx, "Client", Broken)
    records: list[Any] = []
    until = time.monotonic() + 0.2
    http_soak.client("http://127.0.0.1:9/v1", 0, time.monotonic(), until, records, threading.Lock())
    assert sent and len(records) == len(sent)
    outcomes = {r[1] for r in records}
    assert all(" error " in o for o in outcomes), outcomes
    assert any(o.endswith("ValueError") for o in outcomes) and not any(
        http_soak.expected(o) for o in outcomes
    )
