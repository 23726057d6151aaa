"""The peers of benchmarks/decode_cpu.py: model preparation and one runner per engine.

Each runner takes (prompts, new_tokens) and returns the seconds generation took (None
where the peer cannot run that case). Loaded models are cached per (model, precision).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import tinyllm
from tinyllm.runtime import Engine, GenerationConfig

OUT = Path("out/bench")
THREADS = len(os.sched_getaffinity(0))


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def prepare_models(name: str, precision: str, block: int) -> dict[str, Path]:
    """Bundle with a tinyllm engine, HF folder, genai folder (cached under out/bench)."""
    paths = {
        "bundle": OUT / f"{name}.tllm",
        "hf": OUT / "hf" / name,
        "engine": OUT / f"{name}-{precision}.tllm",
        "genai": OUT / "genai" / f"{name}-{precision}",
    }
    if not paths["bundle"].exists():
        tinyllm.import_model(name, paths["bundle"])
    if not paths["hf"].exists():
        loaded = tinyllm.load_torch_model(paths["bundle"])
        loaded.model.save_pretrained(paths["hf"])
        loaded.tokenizer.save_pretrained(paths["hf"])
    if not paths["engine"].exists():
        quant = None if precision == "fp32" else precision
        tinyllm.export(
            paths["bundle"],
            "onnx-cpu",
            paths["engine"],
            quant=quant,
            block_size=block,
            max_seq_len=1024,
        )
    if not paths["genai"].exists():
        extra = [] if precision == "fp32" else ["--extra_options", f"block_size={block}"]
        subprocess.run(
            [
                sys.executable,
                "-m",
                "onnxruntime_genai.models.builder",
                "-i",
                str(paths["hf"]),
                "-o",
                str(paths["genai"]),
                "-p",
                precision,
                "-e",
                "cpu",
                "-c",
                str(OUT / "genai-cache"),
                *extra,
            ],
            check=True,
            capture_output=True,
        )
    return paths


def run_tinyllm(paths: dict[str, Path], prompts: list[list[int]], n: int) -> float:
    engine = _cached(
        "tinyllm",
        f"{paths['engine']}:{len(prompts)}",
        lambda: Engine.load(paths["engine"], max_batch=len(prompts), threads=THREADS),
    )
    config = GenerationConfig(max_new_tokens=n, ignore_eos=True)
    return timed(lambda: engine.generate_ids(prompts, config))


def run_genai(paths: dict[str, Path], prompts: list[list[int]], n: int) -> float:
    import onnxruntime_genai as og

    model = _cached("genai", str(paths["genai"]), lambda: og.Model(str(paths["genai"])))

    def go() -> None:
        params = og.GeneratorParams(model)
        total = len(prompts[0]) + n
        params.set_search_options(
            max_length=total, min_length=total, do_sample=False, batch_size=len(prompts)
        )
        generator = og.Generator(model, params)
        generator.append_tokens(np.array(prompts, dtype=np.int32))
        while not generator.is_done():
            generator.generate_next_token()

    return timed(go)


def run_hf(paths: dict[str, Path], prompts: list[list[int]], n: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(THREADS)
    model = _cached(
        "hf", str(paths["hf"]), lambda: AutoModelForCausalLM.from_pretrained(paths["hf"]).eval()
    )
    ids = torch.tensor(prompts)

    def go() -> None:
        with torch.inference_mode():
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )

    return timed(go)


def llama_gguf(precision: str) -> Path | None:
    """The SmolLM2 GGUF for llama.cpp: Q4_1 as shipped, or F32 rewritten from it."""
    from tinyllm.presets import smollm2_gguf_path

    shipped = smollm2_gguf_path()
    if precision == "int4":
        return shipped
    target = OUT / "gguf" / "SmolLM2-135M-Instruct.F32.gguf"
    if not target.exists():
        import gguf
        from gguf.quants import dequantize

        reader = gguf.GGUFReader(str(shipped))
        target.parent.mkdir(parents=True, exist_ok=True)
        writer = gguf.GGUFWriter(str(target), arch="llama")
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name in (
                "general.architecture",
                "general.file_type",
            ):
                continue
            writer.add_key_value(
                field.name,
                field.contents(),
                field.types[0],
                field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None,
            )
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        for tensor in reader.tensors:
            data = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            writer.add_tensor(tensor.name, data.reshape([int(d) for d in reversed(tensor.shape)]))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return target


def run_llamacpp(precision: str, prompts: list[list[int]], n: int) -> float | None:
    if len(prompts) != 1:
        return None  # llama-cpp-python has no batched generation API
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    path = llama_gguf(precision)
    llm = _cached(
        "llama",
        str(path),
        lambda: Llama(
            model_path=str(path), n_ctx=512, n_threads=THREADS, n_batch=512, verbose=False
        ),
    )

    def go() -> None:
        llm.reset()
        for i, _ in enumerate(llm.generate(prompts[0], temp=0.0, reset=True)):
            if i + 1 >= n:
                break

    return timed(go)


LOADED: dict[tuple[str, str], Any] = {}


def _cached(kind: str, key: str, make: Any) -> Any:
    """Peer models stay loaded for one (model, precision), so repeats can interleave peers."""
    if (kind, key) not in LOADED:
        LOADED[(kind, key)] = make()
    return LOADED[(kind, key)]


def peer_runners(name: str, precision: str, paths: dict[str, Path]) -> dict[str, Any]:
    """peer name -> run(prompts, new_tokens) -> seconds (or None where not applicable)."""
    peers = {
        "tinyllm": lambda p, n: run_tinyllm(paths, p, n),
        "onnxruntime-genai": lambda p, n: run_genai(paths, p, n),
        "hf-generate": lambda p, n: run_hf(paths, p, n),
    }
    if name == "smollm2-135m":
        peers["llama.cpp"] = lambda p, n: run_llamacpp(precision, p, n)
    return peers
