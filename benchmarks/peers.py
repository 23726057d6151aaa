"""The models each engine of benchmarks/decode_cpu.py runs, prepared once and cached.

``prepare(name, precision, engines, out)`` returns, per engine, the path its worker loads
(benchmarks/decode_worker.py) or the reason it cannot run, so a peer that is not
installed is recorded as skipped instead of failing the run:

- tinyllm: the bundle imported from the preset, exported (``onnx-cpu``) at the precision;
- tinyllm-cpp: the same bundle, run by the native runtime (libtinyllm, ``make cpp``);
- onnxruntime-genai: its own model builder from the Hugging Face folder, same precision
  and block size (fp32 and int4 only: the builder has no int8);
- hf-generate: the Hugging Face folder written from the bundle (fp32 weights);
- llama.cpp (SmolLM2 only: the only GGUF there is): F32 rewritten from the shipped
  Q4_1 GGUF, then Q4_0 (symmetric, block 32: the format tinyllm and onnxruntime-genai
  use) or Q8_0 quantized from that F32 by llama.cpp itself;
- openvino-genai: IR exported by optimum-intel (fp32; int8; int4 symmetric, group 32,
  every layer) in its own virtualenv under ``out`` (its transformers pin is older than
  ours).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import tinyllm

ENGINES = (
    "tinyllm",
    "tinyllm-cpp",
    "tinyllm-ids",
    "onnxruntime-genai",
    "hf-generate",
    "llama.cpp",
    "openvino-genai",
)
OPENVINO_PACKAGES = ("torch==2.13.0", "openvino-genai", "optimum-intel[openvino]")
GGUF_TYPES = {"fp32": "F32", "int4": "Q4_0", "int8": "Q8_0"}


def prepare(
    name: str, precision: str, engines: list[str], out: Path, block: int = 32
) -> dict[str, Path | str]:
    """engine -> model path (or the reason it is skipped), for ``name`` at ``precision``."""
    bundle = out / f"{name}.tllm"
    if not bundle.exists():
        tinyllm.import_model(name, bundle)
    return prepare_from(bundle, name, precision, engines, out, block)


def prepare_from(
    bundle: Path, name: str, precision: str, engines: list[str], out: Path, block: int = 32
) -> dict[str, Path | str]:
    """As :func:`prepare`, from an existing float bundle (tests pass a tiny one)."""

    def hf() -> Path:  # a Hugging Face copy, written only for the peers that read one
        folder = out / "hf" / name
        if not folder.exists():
            loaded = tinyllm.load_torch_model(bundle)
            loaded.model.save_pretrained(folder)
            loaded.tokenizer.save_pretrained(folder)
        return folder

    makers = {
        "tinyllm": lambda: tinyllm_engine(bundle, name, precision, out, block),
        "tinyllm-cpp": lambda: native_engine(bundle, name, precision, out, block),
        "tinyllm-ids": lambda: tinyllm_engine(bundle, name, precision, out, block, ids=True),
        "onnxruntime-genai": lambda: genai_model(hf(), name, precision, out, block),
        "hf-generate": hf,
        "llama.cpp": lambda: llama_gguf(name, precision, out),
        "openvino-genai": lambda: openvino_ir(hf(), name, precision, out, block),
    }
    paths: dict[str, Path | str] = {}
    for engine in engines:
        try:
            paths[engine] = makers[engine]()
        except Skip as e:
            paths[engine] = str(e)
    return paths


class Skip(Exception):
    """This engine cannot run this case; the message says why."""


def tinyllm_engine(
    bundle: Path, name: str, precision: str, out: Path, block: int, ids: bool = False
) -> Path:
    """tinyllm's onnx-cpu engine; ``ids``: exported with greedy ids (``tinyllm-ids``: the
    same engine whose greedy steps read the graph's argmax instead of the logits)."""
    path = out / f"{name}-{precision}{'-ids' if ids else ''}.tllm"
    if not path.exists():
        quant = None if precision == "fp32" else precision
        seq = min(1024, tinyllm.open_bundle(bundle).config.max_position_embeddings)
        tinyllm.export(
            bundle,
            "onnx-cpu",
            path,
            quant=quant,
            block_size=block,
            max_seq_len=seq,
            greedy_ids=ids,
        )
    return path


def native_engine(bundle: Path, name: str, precision: str, out: Path, block: int) -> Path:
    """tinyllm's engine (the same bundle) for libtinyllm, when ``make cpp`` has built it."""
    from tinyllm.errors import TinyLLMError
    from tinyllm.runtime import native

    try:
        native.library_path()
    except TinyLLMError as e:
        raise Skip(str(e)) from e
    return tinyllm_engine(bundle, name, precision, out, block)


def genai_model(hf: Path, name: str, precision: str, out: Path, block: int) -> Path:
    if precision not in ("fp32", "int4"):
        raise Skip(f"onnxruntime-genai's model builder has no {precision} CPU precision")
    path = out / "genai" / f"{name}-{precision}"
    if path.exists():
        return path
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError as e:
        raise Skip(f"onnxruntime-genai is not installed (pip install -e '.[bench]'): {e}") from e
    extra = [] if precision == "fp32" else ["--extra_options", f"block_size={block}"]
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf)]
    command += ["-o", str(path), "-p", precision, "-e", "cpu", "-c", str(out / "genai-cache")]
    run_step(command + extra, "onnxruntime-genai's model builder")
    return path


def llama_gguf(name: str, precision: str, out: Path) -> Path:
    """SmolLM2 for llama.cpp: F32 rewritten from the shipped Q4_1 GGUF, Q4_0/Q8_0 from it."""
    if name != "smollm2-135m":
        raise Skip(f"no GGUF of {name} (only SmolLM2 ships one)")
    try:
        import llama_cpp
    except ImportError as e:
        raise Skip(f"llama-cpp-python is not installed (pip install -e '.[bench]'): {e}") from e
    f32 = out / "gguf" / "SmolLM2-135M-Instruct.F32.gguf"
    if not f32.exists():
        write_f32_gguf(f32)
    if precision == "fp32":
        return f32
    target = f32.with_name(f"SmolLM2-135M-Instruct.{GGUF_TYPES[precision]}.gguf")
    if not target.exists():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{GGUF_TYPES[precision]}")
        # Every tensor in the one format, the output (lm head) included.
        params.output_tensor_type = getattr(llama_cpp, f"GGML_TYPE_{GGUF_TYPES[precision]}")
        params.token_embedding_type = params.output_tensor_type
        if llama_cpp.llama_model_quantize(str(f32).encode(), str(target).encode(), params):
            raise Skip(f"llama.cpp could not quantize {f32} to {GGUF_TYPES[precision]}")
    return target


def write_f32_gguf(target: Path) -> None:
    import gguf
    from gguf.quants import dequantize

    from tinyllm.presets import smollm2_gguf_path

    reader = gguf.GGUFReader(str(smollm2_gguf_path()))
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


def openvino_python(out: Path) -> Path:
    """The OpenVINO virtualenv's python, created under ``out`` on first use."""
    venv = out / "venv-openvino"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import openvino_genai, optimum.intel"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    run_step([sys.executable, "-m", "venv", str(venv)], "creating the OpenVINO virtualenv")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--progress-bar", "off"]
    run_step(pip + list(OPENVINO_PACKAGES), f"pip install {' '.join(OPENVINO_PACKAGES)}")
    # optimum-intel[openvino] pulls a torchvision built for another torch, whose missing
    # operators break transformers' import; the export does not use it.
    run_step([str(python), "-m", "pip", "uninstall", "-y", "torchvision"], "pip uninstall")
    return python


def openvino_ir(hf: Path, name: str, precision: str, out: Path, block: int) -> Path:
    path = out / "openvino" / f"{name}-{precision}"
    if (path / "openvino_model.xml").exists():
        return path
    python = openvino_python(out)
    options = {
        "fp32": ["--weight-format", "fp32"],
        "int8": ["--weight-format", "int8"],
        # ratio 1 and all layers: every linear layer, the lm head and the embedding in int4,
        # as in tinyllm's int4 engine (optimum's default keeps some in int8).
        "int4": [
            *("--weight-format", "int4", "--sym", "--group-size", str(block)),
            *("--ratio", "1.0", "--all-layers"),
        ],
    }[precision]
    cli = python.parent / "optimum-cli"
    command = [str(cli), "export", "openvino", "--model", str(hf)]
    command += ["--task", "text-generation-with-past", *options, str(path)]
    run_step(command, "optimum-intel's OpenVINO export")
    return path


def run_step(command: list[str], what: str) -> None:
    """Run a preparation command; a failure becomes a Skip carrying its last output."""
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Skip(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
