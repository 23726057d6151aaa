"""One engine in its own process, driven by benchmarks/decode_cpu.py over a pipe.

    python decode_worker.py '{"engine": "tinyllm", "threads": 2, "spin": true, ...}'

The spec (JSON, the only argument) names the engine, its model files, the threads and
spinning policy, and the prompts (token ids, one list per row). The worker imports only
its own engine (so each engine's libraries, thread pools and memory stay in their own
process; OpenVINO GenAI runs from its own virtualenv, which has no tinyllm), loads the
model and answers one JSON line per command on its protocol channel (the original
stdout; the libraries' own prints go to stderr):

- at start: ``{"ready": true, "settings": {...}, "load_s": s, "base_rss": bytes}``, where
  settings are what the engine was given and, where it can tell, what it runs with;
- ``gen N``: greedy generation of exactly N new tokens for every row (end-of-sequence
  ignored): ``{"seconds": s, "cpu_seconds": s, "tokens": [row 0's new ids]}`` (wall time,
  and the CPU time of the worker's process);
- ``quit``: ``{"peak_rss": bytes, "rss": bytes}`` (VmHWM and VmRSS of this process), exit.

With ``"profile": PREFIX`` in the spec, tinyllm and onnxruntime-genai run with ONNX
Runtime's profiler on, writing ``PREFIX*.json`` by the time ``quit`` answers
(benchmarks/decode_steps.py reads them).

A failed start prints ``{"error": "..."}`` and exits 3, so the harness can record why a
peer did not run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Generate = Callable[[int], list[int]]
AT_QUIT: list[Callable[[], None]] = []  # run before quit answers (profiles written out)


def status(key: str) -> int:
    """A /proc/self/status memory line (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def load_tinyllm(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    """tinyllm's Engine; the spinning policy is added to the session options it builds."""
    import onnxruntime as ort

    applied: dict[str, Any] = {}
    original = ort.InferenceSession

    def session(model: Any, sess_options: Any = None, **kwargs: Any) -> Any:
        spin = "1" if spec["spin"] else "0"
        sess_options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        if spec.get("profile"):
            sess_options.enable_profiling = True
            sess_options.profile_file_prefix = spec["profile"]
        applied.update(
            intra_op_num_threads=sess_options.intra_op_num_threads,
            inter_op_num_threads=sess_options.inter_op_num_threads,
            allow_spinning=sess_options.get_session_config_entry("session.intra_op.allow_spinning"),
            onnxruntime=ort.__version__,
        )
        made = original(model, sess_options=sess_options, **kwargs)
        if spec.get("profile"):
            AT_QUIT.append(made.end_profiling)
        return made

    ort.InferenceSession = session
    from tinyllm.runtime import Engine, GenerationConfig

    prompts = spec["prompts"]
    engine = Engine.load(
        spec["path"],
        max_batch=len(prompts),
        threads=spec["threads"],
        max_seq_len=len(prompts[0]) + spec["max_new"] + 8,
    )
    ort.InferenceSession = original

    def generate(n: int) -> list[int]:
        config = GenerationConfig(max_new_tokens=n, ignore_eos=True)
        return list(engine.generate_ids(prompts, config)[0].token_ids)

    return generate, applied


def load_tinyllm_cpp(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    """libtinyllm (runtime/cpp, built by ``make cpp``) through its ctypes binding.

    runtime/native.py is loaded by file, not as ``tinyllm.runtime.native``: the package's
    ``__init__`` imports the Python engine and onnxruntime's Python module, which would put
    a second ONNX Runtime into this process's memory. The C API sets the intra-op threads
    (and one inter-op thread) but not spinning, so ONNX Runtime's default (spinning on)
    applies whatever the harness asks for; the settings say so.
    """
    import importlib.util
    from types import SimpleNamespace

    package = importlib.util.find_spec("tinyllm.runtime")  # imports tinyllm, not the runtime
    if package is None or not package.submodule_search_locations:
        raise ImportError("tinyllm.runtime is not installed")
    source = os.path.join(next(iter(package.submodule_search_locations)), "native.py")
    module_spec = importlib.util.spec_from_file_location("tinyllm_native_binding", source)
    assert module_spec is not None and module_spec.loader is not None
    native = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = native  # its dataclasses look their module up there
    module_spec.loader.exec_module(native)

    library = native.library_path()
    lib = native.load_library(library)
    prompts = spec["prompts"]
    engine = native.NativeEngine(
        lib,
        spec["path"],
        max_batch=len(prompts),
        threads=spec["threads"],
        max_seq_len=len(prompts[0]) + spec["max_new"] + 8,
    )

    def generate(n: int) -> list[int]:
        # The fields NativeEngine.generate reads from a GenerationConfig: greedy, n tokens.
        config = SimpleNamespace(
            max_new_tokens=n,
            temperature=0.0,
            top_k=0,
            top_p=1.0,
            seed=None,
            stop=[],
            ignore_eos=True,
        )
        return list(engine.generate(prompts, config)[0].token_ids)

    settings = {
        "intra_op_num_threads": spec["threads"],
        "inter_op_num_threads": 1,
        "allow_spinning": "not settable through the C API (ONNX Runtime's default: on)",
        "library": str(library),
        "libtinyllm": lib.tinyllm_version().decode(),
        "python_onnxruntime_imported": "onnxruntime" in sys.modules,
    }
    return generate, settings


def load_genai(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    """onnxruntime-genai with threads and spinning set through a config overlay."""
    import onnxruntime_genai as og

    options = {
        "intra_op_num_threads": spec["threads"],
        "inter_op_num_threads": 1,
        "session.intra_op.allow_spinning": "1" if spec["spin"] else "0",
    }
    overlay = dict(options)
    if spec.get("profile"):
        overlay["enable_profiling"] = spec["profile"]
    config = og.Config(spec["path"])
    config.overlay(json.dumps({"model": {"decoder": {"session_options": overlay}}}))
    models = [og.Model(config)]
    AT_QUIT.append(models.clear)  # the session writes its profile when it is destroyed
    prompts = np.array(spec["prompts"], dtype=np.int32)

    def generate(n: int) -> list[int]:
        model = models[0]
        params = og.GeneratorParams(model)
        total = prompts.shape[1] + n
        params.set_search_options(
            max_length=total, min_length=total, do_sample=False, batch_size=len(prompts)
        )
        generator = og.Generator(model, params)
        generator.append_tokens(prompts)
        while not generator.is_done():
            generator.generate_next_token()
        return [int(t) for t in generator.get_sequence(0)[prompts.shape[1] :]]

    version = getattr(og, "__version__", "?")
    return generate, {"session_options (overlay)": options, "onnxruntime-genai": version}


def load_hf(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    """transformers ``generate``; OMP_WAIT_POLICY (spinning) is set by the harness."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    model = AutoModelForCausalLM.from_pretrained(spec["path"]).eval()
    ids = torch.tensor(spec["prompts"])

    def generate(n: int) -> list[int]:
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=0,
            )
        return [int(t) for t in out[0, ids.shape[1] :]]

    settings = {
        "torch_num_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "torch": torch.__version__,
    }
    return generate, settings


def load_openvino(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    """OpenVINO GenAI's LLMPipeline on CPU (its continuous-batching backend)."""
    import openvino as ov
    import openvino_genai as ov_genai

    properties: dict[str, Any] = {"INFERENCE_NUM_THREADS": spec["threads"]}
    if spec.get("precision") == "fp32":
        # On a CPU with bf16 instructions the plugin computes in bf16 and keeps the KV cache
        # in u8 unless told otherwise: an fp32 row would not be fp32.
        properties |= {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"}
    defaults = ov.Core()
    effective = {
        key: str(properties.get(key, defaults.get_property("CPU", key)))
        for key in ("INFERENCE_PRECISION_HINT", "KV_CACHE_PRECISION")
    }
    # Its prefix cache would serve the repeated prompt from KV kept from the last run,
    # so TTFT would not include the prefill the other engines do.
    scheduler = ov_genai.SchedulerConfig()
    scheduler.enable_prefix_caching = False
    pipe = ov_genai.LLMPipeline(spec["path"], "CPU", scheduler_config=scheduler, **properties)
    prompts = np.array(spec["prompts"], dtype=np.int64)
    inputs = ov_genai.TokenizedInputs(ov.Tensor(prompts), ov.Tensor(np.ones_like(prompts)))

    def generate(n: int) -> list[int]:
        config = ov_genai.GenerationConfig()
        config.max_new_tokens = config.min_new_tokens = n
        config.ignore_eos, config.do_sample = True, False
        result = pipe.generate(inputs, config)
        return [int(t) for t in result.tokens[0]]

    settings = {
        "properties": properties,
        "precision": effective,
        "enable_prefix_caching": scheduler.enable_prefix_caching,
        "spinning": "not settable (the CPU plugin's own thread pool)",
        "openvino": ov.__version__,
        "openvino_genai": ov_genai.__version__,
    }
    return generate, settings


def load_llamacpp(spec: dict[str, Any]) -> tuple[Generate, dict[str, Any]]:
    """llama.cpp through llama-cpp-python's low-level API: one batch of all rows per step,
    one sequence id per row, logits only for each row's last position, greedy argmax."""
    from llamacpp_batch import LlamaBatchRunner

    runner = LlamaBatchRunner(spec["path"], spec["prompts"], spec["max_new"], spec["threads"])
    return runner.generate, runner.settings()


LOADERS: dict[str, Callable[[dict[str, Any]], tuple[Generate, dict[str, Any]]]] = {
    "tinyllm": load_tinyllm,
    "tinyllm-cpp": load_tinyllm_cpp,
    "tinyllm-ids": load_tinyllm,  # the engine exported with greedy ids (peers.py)
    "onnxruntime-genai": load_genai,
    "hf-generate": load_hf,
    "openvino-genai": load_openvino,
    "llama.cpp": load_llamacpp,
}


def serve(spec: dict[str, Any], channel: Any) -> None:
    """Load the engine, then answer commands from stdin until ``quit``."""

    def say(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    base = status("VmRSS")
    start = time.perf_counter()
    try:
        generate, settings = LOADERS[spec["engine"]](spec)
    except Exception as e:  # any failure to start is reported, not raised
        say({"error": f"{type(e).__name__}: {e}"})
        sys.exit(3)
    settings["threads"] = spec["threads"]
    say(
        {
            "ready": True,
            "settings": settings,
            "load_s": time.perf_counter() - start,
            "base_rss": base,
        }
    )
    for line in sys.stdin:
        command, *arg = line.split()
        if command == "gen":
            begin, cpu = time.perf_counter(), time.process_time()
            tokens = generate(int(arg[0]))
            # CPU seconds of the whole process (every thread of the engine): with one
            # thread and no spinning, the work done, whatever else the machine runs.
            cpu = time.process_time() - cpu
            say({"seconds": time.perf_counter() - begin, "cpu_seconds": cpu, "tokens": tokens})
        elif command == "quit":
            for finish in AT_QUIT:
                finish()
            say({"peak_rss": status("VmHWM"), "rss": status("VmRSS")})
            return
        else:
            say({"error": f"unknown command {command!r}"})


def main() -> None:
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the engines print goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    serve(json.loads(sys.argv[1]), channel)


if __name__ == "__main__":
    main()
