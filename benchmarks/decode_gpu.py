"""Decode speed on a CUDA GPU: tinyllm's CUDA and TensorRT engines against
onnxruntime-genai's CUDA build at the same precision, each in its own process.

Engines:
- ``tinyllm-cuda``: ``tinyllm export --target onnx-cuda`` (fp16, or int4/int8 weights),
  loaded with ``device="cuda"``;
- ``tinyllm-tensorrt``: ``tinyllm export --target tensorrt`` (the standard graph built by
  ONNX Runtime's TensorRT EP), loaded with ``device="tensorrt"``;
- ``onnxruntime-genai``: its own model builder with ``-e cuda`` at the same precision and
  block size, run by its CUDA build (``pip install onnxruntime-genai-cuda``).

Each engine runs in its own process (this script with ``--worker``): a prompt of fixed
random ids, exactly N new tokens (end-of-sequence ignored), batch 1 and ``--batch``. Decode
tokens/s is ``(N - 1) / (t(N) - t(1))`` per stream, times the batch; the median over
``--rounds`` with [min-max]. The settings each worker ran with (providers, versions, GPU)
go into the JSON (out/bench/decode_gpu.json).

Needs a CUDA GPU with onnxruntime-gpu; without ONNX Runtime's CUDA provider it exits 2
with a message saying so. An engine that cannot be prepared here (no TensorRT, no
onnxruntime-genai, a precision its builder lacks) gets a "not run" row with the reason,
and the others still run. It has not been run yet (no GPU on the project's machines).

    .venv/bin/python benchmarks/decode_gpu.py --model smollm2-135m --precision fp16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path("out/bench")
ENGINES = ("tinyllm-cuda", "tinyllm-tensorrt", "onnxruntime-genai")
NO_CUDA = (
    "decode_gpu.py needs a CUDA GPU and ONNX Runtime's CUDAExecutionProvider; this "
    "onnxruntime has: {providers}. Install onnxruntime-gpu on a CUDA machine (docs/gpu.md)."
)


def cuda_problem() -> str | None:
    """Why this machine cannot run the benchmark (None: it can)."""
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return NO_CUDA.format(providers=", ".join(providers))
    return None


class NotRun(Exception):
    """An engine this run cannot measure (said in its row; the others still run)."""


def prepare(engine: str, name: str, precision: str, out: Path, block: int) -> Path:
    """The model ``engine`` loads, built once under ``out``."""
    import tinyllm

    bundle = out / f"{name}.tllm"
    if not bundle.exists():
        tinyllm.import_model(name, bundle)
    seq = min(1024, tinyllm.open_bundle(bundle).config.max_position_embeddings)
    quant = precision if precision in ("int4", "int8") else None
    float_precision = None if quant else precision
    if engine in ("tinyllm-cuda", "tinyllm-tensorrt"):
        target = "onnx-cuda" if engine == "tinyllm-cuda" else "tensorrt"
        path = out / f"{name}-{target}-{precision}.tllm"
        if not path.exists():
            tinyllm.export(
                bundle, target, path, quant=quant, precision=float_precision,
                block_size=block, max_seq_len=seq, lora_slots=0,
            )  # fmt: skip
        return path
    if precision not in ("fp16", "int4"):
        raise NotRun(f"onnxruntime-genai's model builder has no {precision} precision")
    hf = out / "hf" / name
    if not hf.exists():
        loaded = tinyllm.load_torch_model(bundle)
        loaded.model.save_pretrained(hf)
        loaded.tokenizer.save_pretrained(hf)
    path = out / "genai-cuda" / f"{name}-{precision}"
    if not path.exists():
        command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf)]
        command += ["-o", str(path), "-p", precision, "-e", "cuda"]
        command += ["-c", str(out / "genai-cache")]
        if quant:
            command += ["--extra_options", f"block_size={block}"]
        subprocess.run(command, check=True)
    return path


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Load one engine, time greedy generation of 1 and N tokens per round."""
    prompts = spec["prompts"]
    if spec["engine"] == "onnxruntime-genai":
        import onnxruntime_genai as og

        model = og.Model(spec["path"])
        ids = np.array(prompts, dtype=np.int32)

        def generate(n: int) -> None:
            params = og.GeneratorParams(model)
            total = ids.shape[1] + n
            params.set_search_options(
                max_length=total, min_length=total, do_sample=False, batch_size=len(ids)
            )
            generator = og.Generator(model, params)
            generator.append_tokens(ids)
            while not generator.is_done():
                generator.generate_next_token()

        settings = {"onnxruntime-genai": getattr(og, "__version__", "?"), "device": "cuda"}
    else:
        import onnxruntime as ort

        from tinyllm.runtime import Engine, GenerationConfig

        device = "cuda" if spec["engine"] == "tinyllm-cuda" else "tensorrt"
        engine = Engine.load(spec["path"], device=device, max_batch=len(prompts))

        def generate(n: int) -> None:
            engine.generate_ids(prompts, GenerationConfig(max_new_tokens=n, ignore_eos=True))

        settings = {"onnxruntime": ort.__version__, "device": device}
    generate(spec["max_new"])  # warm-up (TensorRT and cuDNN pick kernels on first use)
    rates = []
    for _ in range(spec["rounds"]):
        start = time.perf_counter()
        generate(1)
        first = time.perf_counter() - start
        start = time.perf_counter()
        generate(spec["max_new"])
        full = time.perf_counter() - start
        rates.append((spec["max_new"] - 1) / (full - first) * len(prompts))
    return {"settings": settings, "decode_tok_s": rates}


def run(engine: str, path: Path, prompts: list[list[int]], args: argparse.Namespace) -> Any:
    """One engine in its own process; its JSON result, or the error it printed."""
    spec = {"engine": engine, "path": str(path), "prompts": prompts, "max_new": args.tokens}
    spec["rounds"] = args.rounds
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["exit " + str(done.returncode)]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", choices=["fp16", "int8", "int4"], default="fp16")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--out", type=Path, default=OUT, help="folder of models and the JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    problem = cuda_problem()
    if problem is not None:
        print(problem, file=sys.stderr)
        return 2
    import tinyllm

    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"settings": vars(args) | {"worker": None}, "runs": []}
    rows: list[tuple[str, object, str]] = []
    for engine in args.engines.split(","):
        try:
            path = prepare(engine, args.model, args.precision, args.out, args.block_size)
        except Exception as e:  # e.g. no TensorRT here: the other engines still measure
            problem = f"{type(e).__name__}: {e}".splitlines()[0]
            results["runs"].append({"engine": engine, "error": problem})
            rows.append((engine, "-", f"not run: {problem}"))
            continue
        vocab = tinyllm.open_bundle(args.out / f"{args.model}.tllm").config.vocab_size
        for batch in (1, args.batch):
            prompts = rng.integers(10, min(1000, vocab), (batch, args.prompt_tokens)).tolist()
            got = run(engine, path, prompts, args)
            results["runs"].append({"engine": engine, "batch": batch, **got})
            rates = got.get("decode_tok_s")
            cell = (
                f"{statistics.median(rates):.0f} [{min(rates):.0f}-{max(rates):.0f}]"
                if rates
                else f"failed: {got.get('error')}"
            )
            rows.append((engine, batch, cell))
    print(f"{'engine':<20} {'batch':>5}  decode tok/s ({args.model} {args.precision})")
    for engine, batch, cell in rows:
        print(f"{engine:<20} {batch:>5}  {cell}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decode_gpu.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
