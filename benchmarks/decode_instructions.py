"""Instructions per decode step, tinyllm's graph against onnxruntime-genai's, counted by
valgrind's callgrind: a measure the machine's load cannot move (wall time on the shared
2-core machine can, by more than the gaps it is asked to explain; docs/runtime.md).

Each engine's ONNX graph runs in its own process under callgrind, called the way its
engine calls it: tinyllm's with ``seqlens_k`` and ``total_sequence_length``, onnxruntime-
genai's with an ``attention_mask`` (its graph derives both from it), every row at
``--past`` tokens, KV buffers ``[B, KV, --kv-len, H]`` of random values bound as both past
and present (the shared buffer both engines use), one intra-op thread and no spinning (so
the counts are the work, not the waiting). Two warm-up steps, then instructions are
collected around ``--steps`` steps only (callgrind's client requests, from a 4-line C
helper compiled with the system's ``cc``). Per engine the report gives instructions per
step in all, and per function: ONNX Runtime's wheel is stripped, so functions are named
by address, the same in every process (both load the same library), which is enough to
see which kernels differ.

Valgrind's virtual CPU has no AVX-512, so MLAS runs its AVX2 kernels under it: the counts
describe the work the graphs ask for, not the AVX-512 code a native run executes.

    .venv/bin/python benchmarks/decode_instructions.py --model smollm2-135m --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path("out/bench")
# Callgrind's client requests as C functions (ctypes cannot expand the macros); cg_pause and
# cg_resume let decode_host.py leave ONNX Runtime's runs out of its count.
HELPER = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_pause(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void cg_resume(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_dump(void) { CALLGRIND_DUMP_STATS; CALLGRIND_STOP_INSTRUMENTATION; }
"""
ANNOTATED = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)\s*$")


def graph_file(engine_path: Path) -> Path:
    """The ONNX graph of an engine folder: tinyllm's bundle or onnxruntime-genai's folder."""
    found = sorted(engine_path.glob("engines/*/model.onnx")) or sorted(engine_path.glob("*.onnx"))
    if not found:
        raise FileNotFoundError(f"no ONNX graph under {engine_path}")
    return found[0]


def bind_step(
    session: Any, batch: int, past: int, kv_len: int, head_dim: int, seed: int = 0
) -> tuple[Any, list[np.ndarray]]:
    """An IO binding for one decode step of ``batch`` rows at ``past`` tokens, fed the way
    the graph's engine feeds it, and the KV arrays it binds as both past and present
    (``head_dim``: onnxruntime-genai's graph leaves that axis symbolic)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    inputs = {i.name: i for i in session.get_inputs()}
    io = session.io_binding()
    io.bind_cpu_input("input_ids", rng.integers(1, 100, (batch, 1)).astype(np.int64))
    io.bind_output("logits")  # first: get_outputs() lists outputs in the order bound
    genai = "attention_mask" in inputs
    keep = []
    for name, info in inputs.items():
        match = re.match(r"past_(key|value)\.(\d+)$", name) or re.match(
            r"past_key_values\.(\d+)\.(key|value)$", name
        )
        if not match:
            continue
        shape = (batch, info.shape[1], kv_len, head_dim)
        kv = (rng.standard_normal(shape) * 0.5).astype(np.float32)
        value = ort.OrtValue.ortvalue_from_numpy(kv)
        keep.append(kv)
        io.bind_ortvalue_input(name, value)
        if genai:
            layer, kind = match.group(1), match.group(2)
            io.bind_ortvalue_output(f"present.{layer}.{kind}", value)
        else:
            io.bind_ortvalue_output(f"present_{match.group(1)}.{match.group(2)}", value)
    if genai:
        io.bind_cpu_input("attention_mask", np.ones((batch, past + 1), np.int64))
    else:
        io.bind_cpu_input("seqlens_k", np.full(batch, past, np.int32))
        io.bind_cpu_input("total_sequence_length", np.array(past + 1, np.int32))
        if "logits_index" in inputs:
            io.bind_cpu_input("logits_index", np.zeros(batch, np.int64))
    return io, keep


def run_steps(spec: dict[str, Any]) -> dict[str, Any]:
    """The child: ``spec["steps"]`` decode steps of one graph (collection around them when
    ``spec["helper"]`` names the compiled client-request helper)."""
    import ctypes

    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(spec["graph"], options, providers=["CPUExecutionProvider"])
    io, kv = bind_step(session, spec["batch"], spec["past"], spec["kv_len"], spec["head_dim"])
    for _ in range(2):  # warm-up: first-run allocations are not a step's work
        session.run_with_iobinding(io)
    helper = ctypes.CDLL(spec["helper"]) if spec.get("helper") else None
    if helper is not None:
        helper.cg_start()
    for _ in range(spec["steps"]):
        session.run_with_iobinding(io)
    if helper is not None:
        helper.cg_dump()
    logits = io.get_outputs()[0].numpy()
    return {"logits_shape": list(logits.shape), "kv": kv}


def compile_helper(folder: Path) -> Path:
    """The client-request helper as a shared library (needs cc and valgrind's headers)."""
    source = folder / "cgctl.c"
    source.write_text(HELPER)
    library = folder / "libcgctl.so"
    subprocess.run(["cc", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    return library


def parse_annotate(text: str) -> dict[str, int]:
    """``callgrind_annotate --inclusive=no`` output -> instructions by function (the
    function text up to its object file; stripped code keeps its address as its name)."""
    functions: dict[str, int] = {}
    for line in text.splitlines():
        match = ANNOTATED.match(line)
        if not match or "PROGRAM TOTALS" in line:
            continue
        name = re.sub(r"\s*\[[^\]]*\]$", "", match.group(2))
        name = name.rsplit("/", 1)[-1]
        functions[name] = functions.get(name, 0) + int(match.group(1).replace(",", ""))
    return functions


def count(engine: str, graph: Path, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Instructions per decode step of one engine's graph, in all and per function."""
    spec = {
        "graph": str(graph),
        "batch": args.batch,
        "past": args.past,
        "kv_len": args.kv_len,
        "steps": args.steps,
        "head_dim": args.head_dim,
        "helper": str(compile_helper(tmp)),
    }
    prefix = tmp / f"{engine}.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command += [f"--callgrind-out-file={prefix}", sys.executable, __file__, "--child"]
    done = subprocess.run([*command, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{engine} failed under valgrind: {done.stderr[-2000:]}")
    dumps = sorted(tmp.glob(f"{engine}.out.*"))  # the dump at cg_dump, not program end
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {engine} under {tmp}")
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", str(dumps[0])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    functions = {k: v / args.steps for k, v in parse_annotate(text).items()}
    return {"graph": str(graph), "per_step": sum(functions.values()), "functions": functions}


def table(report: dict[str, Any], top: int = 12) -> str:
    """Instructions per step (millions) by function, the engines side by side."""
    engines = [e for e in report["engines"] if "functions" in report["engines"][e]]
    rows = {f for e in engines for f in report["engines"][e]["functions"]}
    biggest = sorted(
        rows, key=lambda f: -max(report["engines"][e]["functions"].get(f, 0) for e in engines)
    )
    lines = [f"{'function':<48}" + "".join(f"{e:>20}" for e in engines)]
    for f in biggest[:top]:
        cells = "".join(
            f"{report['engines'][e]['functions'].get(f, 0) / 1e6:>20.2f}" for e in engines
        )
        lines.append(f"{f[:48]:<48}{cells}")
    totals = "".join(f"{report['engines'][e]['per_step'] / 1e6:>20.2f}" for e in engines)
    lines.append(f"{'all (M instructions per decode step)':<48}{totals}")
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", default="int4")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--past", type=int, default=150, help="tokens every row holds")
    parser.add_argument("--kv-len", type=int, default=200, help="KV buffer length")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--engines", default="tinyllm,onnxruntime-genai")
    parser.add_argument("--out-dir", type=Path, default=OUT, help="model cache (decode_cpu.py)")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from peers import prepare

    import tinyllm

    args = parse(argv)
    for tool in ("valgrind", "callgrind_annotate", "cc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind gcc)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    engines = args.engines.split(",")
    paths = prepare(args.model, args.precision, engines, args.out_dir)
    args.head_dim = tinyllm.open_bundle(args.out_dir / f"{args.model}.tllm").config.head_dim
    report: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    report["engines"] = {}
    for engine in engines:
        path = paths[engine]
        if isinstance(path, str):
            report["engines"][engine] = {"skipped": path}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            report["engines"][engine] = count(engine, graph_file(path), args, Path(tmp))
    out = args.out or args.out_dir / f"decode_instructions-{args.model}-b{args.batch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        result = run_steps(json.loads(sys.argv[2]))
        print(json.dumps({"logits_shape": result["logits_shape"]}))
    else:
        main()
