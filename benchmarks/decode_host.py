"""What tinyllm's engine does outside the ONNX graph per decode step, counted where the
machine's load cannot move it (issue #15): rows computed and host instructions.

decode_instructions.py showed tinyllm's graph and onnxruntime-genai's executing the same
instructions per decode step; what is left is outside the graph. This runs one greedy
generation through the engine's serving loop (the one every entry point rides) on a
staggered workload: ``--batch`` prompts of ``--prompt-tokens`` tokens with a prefill
budget (``--prefill-tokens``) that fits only part of them, so their prefills finish in
different steps. It reports:

- ``rows``: every ONNX Runtime run the engine made, as (kind, rows), the decode rows
  computed in all, the tokens decode runs gave, and the difference (``dummy_rows``: rows
  computed that gave no token);
- ``host``: with ``--valgrind``, the instructions the process executed outside ONNX
  Runtime's runs during the measured generation (callgrind; instrumentation is switched
  off around each ``run_with_iobinding`` by a 4-line C helper compiled with ``cc``), per
  decode run and per generated token. The counts include the Python interpreter, numpy,
  the tokenizer and the recorder's own few calls per run (the same in every version).

Every prompt is queued before the loop plans its first step, so the warm-up generation
(the same workload, run first) makes every binding and cache the measured one uses.

    .venv/bin/python benchmarks/decode_host.py --model smollm2-135m --valgrind
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
from decode_instructions import compile_helper  # callgrind's client requests as C functions

OUT = Path("out/bench")


class Uncounted:
    """An InferenceSession whose runs callgrind does not count (``helper`` pauses and
    resumes instrumentation around each run); everything else passes through."""

    def __init__(self, session: Any, helper: Any) -> None:
        self._session = session
        self._helper = helper

    def run_with_iobinding(self, binding: Any, *args: Any) -> None:
        self._helper.cg_pause()
        try:
            self._session.run_with_iobinding(binding, *args)
        finally:
            self._helper.cg_resume()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self._helper.cg_pause()
        try:
            return self._session.run(*args, **kwargs)
        finally:
            self._helper.cg_resume()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def record_runs(session: Any, runs: list[tuple[str, int]]) -> None:
    """Append (kind, rows) to ``runs`` for each prefill and decode call of ``session``."""
    prefill, decode = session.prefill_rows, session.decode

    def prefill_rows(start: int, chunks: Any, *args: Any, **kwargs: Any) -> Any:
        runs.append(("prefill", len(chunks)))
        return prefill(start, chunks, *args, **kwargs)

    def decode_rows(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        runs.append(("decode", len(tokens)))
        return decode(tokens, *args, **kwargs)

    session.prefill_rows, session.decode = prefill_rows, decode_rows


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the engine, warm up, then one measured generation (collected by callgrind
    around it, outside ONNX Runtime's runs, when ``spec["helper"]`` is set)."""
    import ctypes

    from tinyllm.runtime import Engine, GenerationConfig

    engine = Engine.load(
        spec["bundle"],
        threads=1,
        max_batch=spec["batch"],
        chunk_size=spec["prefill_tokens"],
        prefill_tokens=spec["prefill_tokens"],
        prefix_cache_mb=0,
    )
    vocab = engine.bundle.config.vocab_size
    rng = np.random.default_rng(0)
    high = min(1000, vocab)
    prompts = [
        [int(i) for i in rng.integers(100, high, spec["prompt_tokens"])]
        for _ in range(spec["batch"])
    ]
    config = GenerationConfig(max_new_tokens=spec["new_tokens"], ignore_eos=True)
    server = engine._serving()

    def generate() -> list[list[int]]:
        # Every prompt is queued before the loop plans its first step, so each generation
        # runs the same steps (the warm-up made every binding the measured one uses).
        with server.cond:
            futures = [engine.submit_ids(p, config) for p in prompts]
        return [list(f.result().token_ids) for f in futures]

    generate()  # warm-up: bindings, buffers, caches
    runs: list[tuple[str, int]] = []
    record_runs(engine.session, runs)
    helper = ctypes.CDLL(spec["helper"]) if spec.get("helper") else None
    if helper is not None:
        engine.session.use_session(Uncounted(engine.session.sess, helper))
        helper.cg_start()
    tokens = generate()
    if helper is not None:
        helper.cg_dump()
    engine.close()
    return {"runs": runs, "tokens": tokens}


def summarize(runs: list[tuple[str, int]], tokens: list[list[int]]) -> dict[str, Any]:
    """Rows computed against tokens given. Each row's first token comes from its prefill
    run; every later one from a decode run (no speculation here)."""
    decode = [rows for kind, rows in runs if kind == "decode"]
    decoded = sum(max(len(t) - 1, 0) for t in tokens)
    computed = sum(decode)
    return {
        "runs": [list(r) for r in runs],
        "decode_runs": len(decode),
        "decode_rows_computed": computed,
        "decode_tokens": decoded,
        "dummy_rows": computed - decoded,
    }


def callgrind_total(text: str) -> int:
    """The instruction total of a callgrind output file: its ``totals:`` line (the sum of
    every cost line, all threads). Its ``summary:`` line is not used: in a dump made by a
    client request it counts only the dumping thread (here the caller waiting on the
    loop thread that does the work)."""
    match = re.search(r"^totals:\s+(\d+)", text, re.MULTILINE)
    if match is None:
        raise ValueError("no totals line in the callgrind output")
    return int(match.group(1))


def count_host(spec: dict[str, Any], tmp: Path, keep: Path | None = None) -> dict[str, Any]:
    """The child under callgrind: host instructions of the measured generation (``keep``:
    where to copy callgrind's dump, for ``callgrind_annotate``)."""
    spec = {**spec, "helper": str(compile_helper(tmp))}
    prefix = tmp / "host.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    command += [f"--callgrind-out-file={prefix}", sys.executable, __file__, "--child"]
    done = subprocess.run([*command, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the child failed under valgrind: {done.stderr[-2000:]}")
    dumps = sorted(tmp.glob("host.out.*"))  # the dump at cg_dump, not program end
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump under {tmp}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    total = callgrind_total(dumps[0].read_text())
    if keep is not None:
        shutil.copyfile(dumps[0], keep)
    rows = summarize([tuple(r) for r in child["runs"]], child["tokens"])
    return {
        "instructions": total,
        "per_decode_run": total / max(rows["decode_runs"], 1),
        "per_token": total / max(sum(len(t) for t in child["tokens"]), 1),
        "rows": rows,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--precision", default="int4")
    parser.add_argument("--bundle", type=Path, default=None, help="an exported bundle to use")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument(
        "--prefill-tokens", type=int, default=128, help="prompt tokens prefilled per step"
    )
    parser.add_argument("--valgrind", action="store_true", help="count host instructions")
    parser.add_argument("--dump", type=Path, default=None, help="keep callgrind's dump here")
    parser.add_argument("--out-dir", type=Path, default=OUT, help="model cache (decode_cpu.py)")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    bundle = args.bundle
    if bundle is None:
        from peers import prepare

        path = prepare(args.model, args.precision, ["tinyllm"], args.out_dir)["tinyllm"]
        if isinstance(path, str):
            raise SystemExit(f"no tinyllm engine: {path}")
        bundle = path
    spec = {
        "bundle": str(bundle),
        "batch": args.batch,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "prefill_tokens": args.prefill_tokens,
    }
    native = run_child(spec)
    report: dict[str, Any] = {"settings": spec, "rows": summarize(native["runs"], native["tokens"])}
    report["row0_tokens"] = native["tokens"][0]
    if args.valgrind:
        for tool in ("valgrind", "cc"):
            if shutil.which(tool) is None:
                raise SystemExit(f"{tool} is not installed (apt-get install valgrind gcc)")
        with tempfile.TemporaryDirectory() as tmp:
            report["host"] = count_host(spec, Path(tmp), args.dump)
    name = args.model if args.bundle is None else Path(args.bundle).stem
    out = args.out or args.out_dir / f"decode_host-{name}-b{args.batch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    rows = report["rows"]
    print(
        f"decode runs {rows['decode_runs']}, rows computed {rows['decode_rows_computed']}, "
        f"tokens {rows['decode_tokens']}, dummy rows {rows['dummy_rows']}"
    )
    if "host" in report:
        host = report["host"]
        print(
            f"host instructions: {host['instructions'] / 1e6:.2f} M in all, "
            f"{host['per_decode_run'] / 1e6:.3f} M per decode run, "
            f"{host['per_token'] / 1e3:.1f} k per token"
        )
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        result = run_child(json.loads(sys.argv[2]))
        print(json.dumps(result))
    else:
        main()
