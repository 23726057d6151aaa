"""Decode speed on CPU: tinyllm's engine against its peers, in one run, same machine.

Peers: onnxruntime-genai (its own model builder, same precision and block size),
Hugging Face transformers ``generate``, and llama.cpp through llama-cpp-python (SmolLM2
only: its shipped Q4_1 GGUF for int4, an F32 GGUF rewritten from it for fp32). Models:
SmolLM2-135M (real weights) and the exact Qwen2.5-0.5B shape (random weights). A
128-token prompt of fixed random ids, exactly 128 new tokens (end-of-sequence ignored),
single stream and batch 8.

TTFT is the time to prefill and produce the first token. Decode tokens/s is
``(new_tokens - 1) / (t(new_tokens) - t(1))`` per stream, times the batch for batch 8.
The bandwidth floor is bytes of weights read per decode step over the measured memory
read bandwidth (a large numpy reduction), so "% floor" is achieved / floor.

    .venv/bin/python benchmarks/decode_cpu.py            # full run (~30 min on 2 cores)
    .venv/bin/python benchmarks/decode_cpu.py --quick    # SmolLM2 only, 32 new tokens
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from peers import LOADED, OUT, THREADS, peer_runners, prepare_models, timed

import tinyllm
from tinyllm.runtime import Engine, GenerationConfig


def memory_bandwidth() -> float:
    """Bytes/s of streaming reads over 1 GiB with every thread: the best of a threaded
    numpy reduction and a numpy (OpenBLAS) matrix-vector product, 5 tries each."""
    from concurrent.futures import ThreadPoolExecutor

    data = np.ones(256 * 2**20, np.float32)
    chunks = np.array_split(data, THREADS)
    matrix, vector = data.reshape(-1, 4096), np.ones(4096, np.float32)
    with ThreadPoolExecutor(THREADS) as pool:
        reduce_s = min(timed(lambda: list(pool.map(np.sum, chunks))) for _ in range(5))
    gemv_s = min(timed(lambda: matrix @ vector) for _ in range(5))
    return data.nbytes / min(reduce_s, gemv_s)


def decode_bytes(bundle: tinyllm.Bundle, precision: str) -> int:
    """Weight bytes one decode step reads: every linear weight and the lm_head."""
    c = bundle.config
    params = c.num_parameters() - c.vocab_size * c.hidden_size  # minus the embedding lookup
    params += c.vocab_size * c.hidden_size  # the lm_head (tied or not) is read in full
    if precision == "fp32":
        return params * 4
    bits = 4 if precision == "int4" else 8
    return int(params * bits / 8 + params / 32 * 4)  # codes + an fp32 scale per 32 weights


def measure(
    peers: dict[str, Any], prompts: list[list[int]], n: int, repeats: int
) -> dict[str, Any]:
    """Per peer: TTFT, total time and decode tokens/s (best of ``repeats``).

    Repeats go round-robin over the peers, so a slow or fast moment of the machine does
    not land on one peer only.
    """
    for run in peers.values():
        run(prompts, 2)  # warm-up (and load)
    times: dict[str, list[tuple[float, float]]] = {peer: [] for peer in peers}
    for _ in range(repeats):
        for peer, run in peers.items():
            first = run(prompts, 1)
            if first is not None:
                times[peer].append((first, run(prompts, n)))
    results: dict[str, Any] = {}
    for peer, pairs in times.items():
        if not pairs:
            results[peer] = None
            continue
        ttft, total = min(p[0] for p in pairs), min(p[1] for p in pairs)
        decode = (n - 1) / max(total - ttft, 1e-9) * len(prompts)
        results[peer] = {"ttft_s": ttft, "total_s": total, "decode_tok_s": decode}
    return results


def greedy_parity(paths: dict[str, Path], count: int, new_tokens: int = 32) -> dict[str, int]:
    """fp32 engine vs transformers greedy generation on ``count`` real sentences.

    Both stop at end-of-sequence (transformers' min_new_tokens would forbid it while the
    engine's ignore_eos only keeps going, so neither is used here).
    """
    from importlib import resources

    import torch

    corpus = resources.files("tinyllm").joinpath("tokenizer_corpus.txt").read_text("utf-8")
    texts = [line for line in corpus.splitlines() if len(line) > 30][:count]
    engine = Engine.load(paths["engine"], max_batch=1)
    loaded = tinyllm.load_torch_model(paths["bundle"])
    stops = engine.stop_ids
    same = 0
    for text in texts:
        ids = engine.encode(text)
        ours = engine.generate_ids([ids], GenerationConfig(max_new_tokens=new_tokens))[0].token_ids
        with torch.inference_mode():
            out = loaded.model.generate(
                torch.tensor([ids]),
                max_new_tokens=new_tokens,
                do_sample=False,
                eos_token_id=sorted(stops),
                pad_token_id=0,
            )
        theirs = out[0, len(ids) :].tolist()
        while theirs and theirs[-1] in stops:
            theirs.pop()
        same += ours == theirs
    return {"prompts": len(texts), "identical": same, "new_tokens": new_tokens}


def peak_memory(engine_path: Path, prompt_len: int, n: int) -> dict[str, float]:
    """Peak RSS growth of loading the engine and generating, in a fresh process."""
    # ru_maxrss survives exec (it would report the parent's peak): read VmRSS / VmHWM.
    script = (
        "from tinyllm.runtime import Engine, GenerationConfig\n"
        "def status(key):\n"
        "    line = [x for x in open('/proc/self/status') if x.startswith(key)][0]\n"
        "    return int(line.split()[1]) * 1024\n"
        "base = status('VmRSS')\n"
        f"e = Engine.load({str(engine_path)!r}, max_batch=1, max_seq_len={prompt_len + n + 8})\n"
        f"config = GenerationConfig(max_new_tokens={n}, ignore_eos=True)\n"
        f"e.generate_ids([list(range(10, 10 + {prompt_len}))], config)\n"
        "print(status('VmHWM') - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    bundle = tinyllm.open_bundle(engine_path)
    engine = next(iter(bundle.manifest.engines.values()))
    files = [f for f in bundle.manifest.files if f.startswith(engine.path + "/")]
    weights = sum(bundle.manifest.files[f].size for f in files)
    c = bundle.config
    kv = 2 * c.num_hidden_layers * c.num_key_value_heads * (prompt_len + n + 8) * c.head_dim * 4
    peak = float(out.stdout.strip())
    return {
        "peak_rss_bytes": peak,
        "weight_bytes": weights,
        "kv_bytes": kv,
        "ratio": peak / (weights + kv),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-0.5b-shape")
    parser.add_argument("--precisions", default="fp32,int4")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--parity", type=int, default=20, help="prompts for the fp32 token check")
    parser.add_argument("--parity-only", action="store_true", help="only the fp32 token check")
    parser.add_argument(
        "--quick", action="store_true", help="SmolLM2 only, 32 new tokens, 1 repeat"
    )
    parser.add_argument("--out", default=str(OUT / "decode_cpu.json"))
    args = parser.parse_args()
    if args.quick:
        args.models, args.new_tokens, args.repeats = "smollm2-135m", 32, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    OUT.mkdir(parents=True, exist_ok=True)
    if args.parity_only:
        for name in args.models.split(","):
            result = greedy_parity(prepare_models(name, "fp32", args.block_size), args.parity)
            print(
                f"{name} fp32 engine vs transformers: {result['identical']}/{result['prompts']} "
                "prompts give identical greedy tokens"
            )
            Path(OUT / f"parity-{name}.json").write_text(json.dumps(result, indent=2))
        return
    bandwidth = memory_bandwidth()
    rows: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    parity: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            paths = prepare_models(name, precision, args.block_size)
            bundle = tinyllm.open_bundle(paths["bundle"])
            floor = bandwidth / decode_bytes(bundle, precision)
            peers = peer_runners(name, precision, paths)
            for batch in (int(b) for b in args.batches.split(",")):
                prompts = [
                    rng.integers(100, 1000, args.prompt_tokens).tolist() for _ in range(batch)
                ]
                results = measure(peers, prompts, args.new_tokens, args.repeats)
                ours = results["tinyllm"]
                assert ours is not None
                for peer, result in results.items():
                    if result is None:
                        continue
                    rows.append(
                        {
                            "model": name,
                            "precision": precision,
                            "batch": batch,
                            "peer": peer,
                            **result,
                            "tinyllm_speedup": ours["decode_tok_s"] / result["decode_tok_s"],
                            "pct_floor": 100 * result["decode_tok_s"] / batch / floor,
                            "floor_tok_s": floor,
                        }
                    )
            LOADED.clear()
            if precision == "fp32" and args.parity:
                parity[name] = greedy_parity(paths, args.parity)
            if precision == "int4":
                memory[name] = peak_memory(paths["engine"], args.prompt_tokens, args.new_tokens)
    bandwidth = max(bandwidth, memory_bandwidth())  # measured before and after the runs
    report = {
        "parity": parity,
        "machine": {
            "cpu_threads": THREADS,
            "platform": platform.platform(),
            "read_bandwidth_gb_s": bandwidth / 1e9,
        },
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "rows": rows,
        "memory": memory,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(
        f"read bandwidth {bandwidth / 1e9:.1f} GB/s, {THREADS} threads, "
        f"{args.prompt_tokens}-token prompt, {args.new_tokens} new tokens"
    )
    print(
        f"{'model':<20}{'prec':<6}{'batch':>6}  {'peer':<18}{'TTFT ms':>9}{'decode tok/s':>14}"
        f"{'% floor':>9}{'tinyllm x':>11}"
    )
    for r in rows:
        print(
            f"{r['model']:<20}{r['precision']:<6}{r['batch']:>6}  {r['peer']:<18}"
            f"{1000 * r['ttft_s']:>9.0f}{r['decode_tok_s']:>14.1f}{r['pct_floor']:>8.0f}%"
            f"{r['tinyllm_speedup']:>10.2f}x"
        )
    for name, m in memory.items():
        print(
            f"{name} int4 engine: peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB = "
            f"{m['ratio']:.2f} x (weights {m['weight_bytes'] / 2**20:.0f} MiB"
            f" + KV {m['kv_bytes'] / 2**20:.0f} MiB)"
        )
    for name, p in parity.items():
        print(
            f"{name} fp32 engine vs transformers: {p['identical']}/{p['prompts']} prompts give "
            f"identical greedy tokens ({p['new_tokens']} new tokens each)"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
