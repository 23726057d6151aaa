"""Peak memory on CPU: tinyllm's engine (Python and the C++ runtime) against
onnxruntime-genai at the same precision, single stream and batch 8.

Every case runs in a fresh process, one after the other (never two at once), which
imports its runtime, loads the engine and generates: a prompt of ``--prompt-tokens``
fixed ids per row and exactly ``--new-tokens`` new tokens (end-of-sequence ignored).
Reported per case, from ``/proc/self/status``:

- ``peak``: the process's peak RSS (VmHWM), everything included (the interpreter too);
- ``import``: RSS after the imports, before the load (what the runtime's libraries cost);
- ``engine``: ``peak - import``, the engine's own peak (weights, KV cache, scratch);
- ``load_s``: seconds ``load`` took.

tinyllm runs with its defaults (``Engine.load(path, max_batch=b)``: a 4096-token context
capped at the export's, here 1024); onnxruntime-genai with ``max_length`` = prompt + new
tokens, the least it accepts. The models come from benchmarks/peers.py (cached under
out/bench): SmolLM2-135M, tinyllm's RTN int4 export and onnxruntime-genai's builder at
int4, both block 32 and accuracy level 4. Also reported: the engines' weight files.

    .venv/bin/python benchmarks/memory_cpu.py                 # int4, batch 1 and 8
    .venv/bin/python benchmarks/memory_cpu.py --engines tinyllm --batches 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from peers import prepare

from tinyllm.errors import TinyLLMError
from tinyllm.runtime.native import library_path

ENGINES = ("tinyllm", "tinyllm-native", "onnxruntime-genai")
THREADS = len(os.sched_getaffinity(0))
OUT = Path("out/bench")


def prepare_models(
    name: str, precision: str, block: int, engines: list[str], out: Path = OUT
) -> dict[str, Path]:
    """The tinyllm engine bundle and, when ``engines`` has it, the onnxruntime-genai
    folder (cached under ``out``)."""
    wanted = ["tinyllm"] + (["onnxruntime-genai"] if "onnxruntime-genai" in engines else [])
    made = prepare(name, precision, wanted, out, block)
    for engine, path in made.items():
        if not isinstance(path, Path):
            raise SystemExit(f"{engine}: {path}")
    paths = {"engine": Path(made["tinyllm"])}
    if "onnxruntime-genai" in made:
        paths["genai"] = Path(made["onnxruntime-genai"])
    return paths


# The child process: imports one runtime, loads, generates, prints one JSON line.
CHILD = """
import json, sys, time
def rss(key):
    line = [x for x in open('/proc/self/status') if x.startswith(key)][0]
    return int(line.split()[1]) * 1024
kind, path, batch, prompt_len, new, threads, lib = sys.argv[1:8]
batch, prompt_len, new, threads = int(batch), int(prompt_len), int(new), int(threads)
prompts = [[10 + (17 * r + 31 * i) % 5000 for i in range(prompt_len)] for r in range(batch)]
if kind == 'tinyllm':
    from tinyllm.runtime import Engine, GenerationConfig
    base = rss('VmRSS'); start = time.perf_counter()
    engine = Engine.load(path, max_batch=batch, threads=threads)
    load_s = time.perf_counter() - start; loaded = rss('VmRSS')
    config = GenerationConfig(max_new_tokens=new, ignore_eos=True)
    out = [r.token_ids for r in engine.generate_ids(prompts, config)]
elif kind == 'tinyllm-native':
    from tinyllm.runtime.native import NativeEngine, load_library
    from tinyllm.runtime.sampling import GenerationConfig
    handle = load_library(lib)
    base = rss('VmRSS'); start = time.perf_counter()
    engine = NativeEngine(handle, path, max_batch=batch, threads=threads)
    load_s = time.perf_counter() - start; loaded = rss('VmRSS')
    config = GenerationConfig(max_new_tokens=new, ignore_eos=True)
    out = [r.token_ids for r in engine.generate(prompts, config)]
else:
    import numpy as np
    import onnxruntime_genai as og
    base = rss('VmRSS'); start = time.perf_counter()
    cfg = og.Config(path)
    cfg.overlay(json.dumps({'model': {'decoder': {'session_options': {
        'intra_op_num_threads': threads, 'inter_op_num_threads': 1}}}}))
    model = og.Model(cfg)
    load_s = time.perf_counter() - start; loaded = rss('VmRSS')
    params = og.GeneratorParams(model)
    total = prompt_len + new
    params.set_search_options(max_length=total, min_length=total, do_sample=False,
                              batch_size=batch)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(prompts, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    out = [list(generator.get_sequence(r))[prompt_len:] for r in range(batch)]
assert all(len(o) == new for o in out), [len(o) for o in out]
print(json.dumps({'import': base, 'loaded': loaded, 'peak': rss('VmHWM'), 'load_s': load_s}))
"""


def run_case(kind: str, path: Path, batch: int, prompt: int, new: int) -> dict[str, Any]:
    """One case in a fresh process: its RSS figures (bytes) and load seconds."""
    args = [kind, str(path), str(batch), str(prompt), str(new), str(THREADS)]
    args.append(str(library_path()) if kind == "tinyllm-native" else "")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{kind} batch {batch} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["engine"] = result["peak"] - result["import"]
    return result


def weight_bytes(kind: str, paths: dict[str, Path]) -> int:
    """Bytes of the files holding the engine's graph and weights."""
    if kind == "onnxruntime-genai":
        return sum(f.stat().st_size for f in paths["genai"].glob("model.onnx*"))
    return sum(f.stat().st_size for f in (paths["engine"] / "engines").glob("*/model.onnx*"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", default="int4", choices=["int4", "int8", "fp32"])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1, help="rounds; the minimum is kept")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--out-dir", type=Path, default=OUT, help="model cache")
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    if unknown := sorted(set(engines) - set(ENGINES)):
        parser.error(f"unknown engine {unknown[0]!r}; choose from {', '.join(ENGINES)}")
    if "tinyllm-native" in engines:
        try:
            library_path()
        except TinyLLMError as e:  # says how to build it
            raise SystemExit(str(e)) from None
    paths = prepare_models(args.model, args.precision, 32, engines, args.out_dir)
    results: list[dict[str, Any]] = []
    for batch in (int(b) for b in args.batches.split(",")):
        for kind in engines:
            path = paths["genai"] if kind == "onnxruntime-genai" else paths["engine"]
            runs = [
                run_case(kind, path, batch, args.prompt_tokens, args.new_tokens)
                for _ in range(args.repeats)
            ]
            best = min(runs, key=lambda r: r["peak"])
            best.update(engine_name=kind, batch=batch, weights=weight_bytes(kind, paths))
            results.append(best)
    mib = 2**20
    print(f"{args.model} {args.precision}, prompt {args.prompt_tokens} + {args.new_tokens} new")
    print("| engine | batch | peak RSS MiB | engine MiB | import MiB | weights MiB | load s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['engine_name']} | {r['batch']} | {r['peak'] / mib:.0f} | "
            f"{r['engine'] / mib:.0f} | {r['import'] / mib:.0f} | {r['weights'] / mib:.0f} | "
            f"{r['load_s']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
