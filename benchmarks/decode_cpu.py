"""Decode speed on CPU: tinyllm's engine against its peers, each in its own process.

Engines (benchmarks/peers.py prepares their models): tinyllm, tinyllm-cpp (the same
engine run by the native runtime, libtinyllm from ``make cpp``, through ctypes),
tinyllm-ids (the same export with ``greedy_ids``: greedy steps read the graph's argmax,
not the logits),
onnxruntime-genai (its own model builder, same precision and block size), Hugging Face
transformers ``generate``, llama.cpp through llama-cpp-python's low-level batch API
(SmolLM2 only: F32, Q4_0, Q8_0 GGUF), OpenVINO GenAI (IR exported by optimum-intel; int4
symmetric group 32, int8, fp32, from its own virtualenv). Models: SmolLM2-135M (real
weights) and the exact Qwen2.5-0.5B shape (random weights). A prompt of fixed random ids,
exactly N new tokens (end-of-sequence ignored), single stream and batch 8 (row 0 is the
single-stream prompt).

Fairness: every engine runs in its own process (benchmarks/decode_worker.py), with the
same thread count and spinning policy set explicitly (ONNX Runtime session options for
tinyllm and, through a config overlay, onnxruntime-genai; the load options' threads for
tinyllm-cpp, whose C API cannot set spinning: ONNX Runtime's default, on, applies and its
settings say so; ``n_threads`` and ``n_threads_batch`` for llama.cpp;
``torch.set_num_threads`` and OMP_WAIT_POLICY for transformers; INFERENCE_NUM_THREADS for
OpenVINO, whose fp32 rows also set INFERENCE_PRECISION_HINT and KV_CACHE_PRECISION to f32:
on a CPU with bf16 instructions it otherwise computes in bf16 with a u8 KV cache, and its
int4 and int8 rows keep those defaults, recorded); the settings each worker reports go
into the JSON. While one engine runs, every
other worker is stopped (SIGSTOP), so an idle peer that keeps polling cannot take the
cores. Rounds interleave the engines and rotate their order; each figure is the median
over rounds with [min-max].
``--clock cpu`` times every run by its worker's CPU time instead of the wall clock:
with ``--threads 1 --spin off`` that is the work each engine does per token, which other
jobs on the machine barely move (they take turns on the cores, not instructions), so
small gaps can be told apart on a shared machine; the speeds are then tokens per CPU
second. Peak RSS (VmHWM) is per engine process, per batch (tinyllm-cpp's holds the Python
interpreter that drives libtinyllm through ctypes, but not onnxruntime's Python module).

TTFT is the time to prefill and produce the first token. Decode tokens/s is
``(N - 1) / (t(N) - t(1))`` per stream, times the batch. The bandwidth floor: a decode step
reads every weight once whatever the batch, so steps/s can be at most (read bandwidth /
weight bytes a step reads). The bytes are counted in tinyllm's exported graph (every
initializer but row lookups: ``tinyllm.runtime.roofline.graph_weights``), the read
bandwidth is measured in the same run (before and after the engines, the better of the
two). Per row: "GB/s" is the weight bytes read per second (steps/s times bytes per step,
the same bytes for every engine at that precision) and "% floor" its share of the
bandwidth.

    .venv/bin/python benchmarks/decode_cpu.py            # full run (about an hour on 2 cores)
    .venv/bin/python benchmarks/decode_cpu.py --quick    # SmolLM2 int4, short, 2 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from peers import ENGINES, openvino_python, prepare

import tinyllm
from tinyllm.runtime.hostinfo import cpu_info

OUT = Path("out/bench")
WORKER = Path(__file__).with_name("decode_worker.py")


CRASHES = ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT")


class PeerFailed(RuntimeError):
    """An engine's worker failed while measuring; ``engine`` names it."""

    def __init__(self, engine: str, reason: str) -> None:
        super().__init__(f"{engine}: {reason}")
        self.engine, self.reason = engine, reason


class Worker:
    """One engine in its own process (decode_worker.py), loaded and waiting for commands."""

    def __init__(
        self, spec: dict[str, Any], python: str, env: dict[str, str], log: Path, clock: str = "wall"
    ) -> None:
        self.log = log
        self.clock = clock
        with log.open("w") as stderr:  # the engines' own output, kept out of any pipe
            self.proc = subprocess.Popen(
                [python, str(WORKER), json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=env,
            )
        self.tokens: list[int] = []
        self.paused = False
        hello = self._read()
        if "error" in hello:
            self.proc.wait()
            raise RuntimeError(hello["error"])
        self.ready = hello

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"error": self.exit_reason()}
        return dict(json.loads(line))

    def exit_reason(self) -> str:
        """Why the worker stopped answering: its exit status or the signal that killed it
        (a segfault in an engine's native code is a report, not a crash of the harness)."""
        code = self.proc.wait()
        tail = " | ".join(self.log.read_text().strip().splitlines()[-3:])
        if code < 0:
            name = signal.Signals(-code).name
            crash = " (a crash in the engine's native code)" if name in CRASHES else ""
            return f"worker killed by {name}{crash}; last log lines: {tail}; log {self.log}"
        return f"worker exited with status {code}; last log lines: {tail}; log {self.log}"

    def _ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def run(self, n: int) -> float:
        """Generate ``n`` tokens a row: the seconds it took on the worker's clock."""
        answer = self._ask(f"gen {n}")
        self.tokens = answer["tokens"]
        return float(answer["cpu_seconds" if self.clock == "cpu" else "seconds"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pause(self) -> None:
        """Stop the process (SIGSTOP) while another engine is measured: an idle peer must
        not take the cores (llama-cpp-python's threads keep polling between calls: an idle
        llama.cpp worker measured 2.99 CPU seconds in 3 s, and every ONNX Runtime engine
        beside it decoded about 3x slower)."""
        if self.paused or not self.alive():
            return
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        # Wait until it has stopped, so no timed run starts beside it.
        pid, status = os.waitpid(self.proc.pid, os.WUNTRACED)
        if pid and not os.WIFSTOPPED(status):  # it died meanwhile: keep its exit status
            self.proc.returncode = os.waitstatus_to_exitcode(status)

    def resume(self) -> None:
        if self.paused and self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def close(self) -> dict[str, Any]:
        self.resume()
        memory = self._ask("quit")
        self.proc.wait(timeout=60)
        return memory


def start(
    engine: str, path: Path, prompts: list[list[int]], args: argparse.Namespace, precision: str = ""
) -> Worker:
    """Start ``engine``'s worker on ``path`` with the run's threads and spinning policy
    (``precision``: the weights' precision, for engines that must be told to compute in it)."""
    spec = {
        "engine": engine,
        "path": str(path),
        "precision": precision,
        "prompts": prompts,
        "max_new": args.new_tokens,
        "threads": args.threads,
        "spin": args.spin == "on",
    }
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["OMP_WAIT_POLICY"] = "ACTIVE" if args.spin == "on" else "PASSIVE"
    python = str(openvino_python(args.out_dir)) if engine == "openvino-genai" else sys.executable
    logs = args.out_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return Worker(spec, python, env, logs / f"{engine}-b{len(prompts)}.log", args.clock)


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(
    runners: dict[str, Callable[[int], float]], n: int, rounds: int, batch: int
) -> dict[str, dict[str, Any]]:
    """Per engine: TTFT and decode tokens/s of each round, and their median [min-max].

    ``runners``: engine -> run(new_tokens) -> seconds. One warm-up pass, then ``rounds``
    rounds; round r starts at engine r (mod count), so no engine always runs first or
    right after the same neighbour.
    """
    names = list(runners)
    for name in names:
        runners[name](2)  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            first = runners[name](1)
            samples[name].append((first, runners[name](n)))
    results: dict[str, dict[str, Any]] = {}
    for name, pairs in samples.items():
        ttft = [first for first, _ in pairs]
        decode = [(n - 1) / max(total - first, 1e-9) * batch for first, total in pairs]
        results[name] = {
            "ttft_s": spread(ttft),
            "decode_tok_s": spread(decode),
            "rounds": {"ttft_s": ttft, "decode_tok_s": decode},
        }
    return results


def ratios(results: dict[str, dict[str, Any]], ours: str = "tinyllm") -> None:
    """Add tinyllm / peer decode speed and tinyllm / peer TTFT, per round, to each peer."""
    if ours not in results:
        return
    mine = results[ours]["rounds"]
    for name, result in results.items():
        if name == ours:
            continue
        theirs = result["rounds"]
        speed = [a / b for a, b in zip(mine["decode_tok_s"], theirs["decode_tok_s"], strict=True)]
        ttft = [a / b for a, b in zip(mine["ttft_s"], theirs["ttft_s"], strict=True)]
        result["tinyllm_speedup"], result["tinyllm_ttft_ratio"] = spread(speed), spread(ttft)


def alone(workers: dict[str, Worker], engine: str) -> Callable[[int], float]:
    """``workers[engine].run``, with every other worker stopped while it runs."""

    def call(n: int) -> float:
        for name, worker in workers.items():
            (worker.resume if name == engine else worker.pause)()
        return workers[engine].run(n)

    return call


def guarded(engine: str, run: Callable[[int], float]) -> Callable[[int], float]:
    """``run`` whose failure is a :class:`PeerFailed` naming ``engine``."""

    def call(n: int) -> float:
        try:
            return run(n)
        except (RuntimeError, OSError, ValueError) as e:
            raise PeerFailed(engine, str(e)) from e

    return call


def run_case(
    paths: dict[str, Path | str],
    prompts: list[list[int]],
    args: argparse.Namespace,
    precision: str = "",
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Start every engine of one (model, precision, batch), measure, stop: results and skips."""
    workers: dict[str, Worker] = {}
    skipped: dict[str, str] = {}
    for engine, path in paths.items():
        if isinstance(path, str):
            skipped[engine] = path
            continue
        try:
            workers[engine] = start(engine, path, prompts, args, precision)
        except Exception as e:  # a peer that cannot start is recorded, not fatal
            skipped[engine] = f"could not start: {e}"
    results: dict[str, dict[str, Any]] = {}
    try:
        while True:  # a worker that dies while measuring is recorded and the rest re-measured
            if not workers:
                break
            try:
                runners = {name: guarded(name, alone(workers, name)) for name in workers}
                results = measure(runners, args.new_tokens, args.rounds, len(prompts))
                break
            except PeerFailed as e:
                skipped[e.engine] = f"failed while measuring: {e.reason}"
                failed = workers.pop(e.engine)
                if failed.alive():
                    failed.resume()
                    failed.proc.kill()
                    failed.proc.wait()
    finally:
        memory = {name: w.close() for name, w in workers.items() if w.alive()}
    reference = workers["tinyllm"].tokens if "tinyllm" in workers else []
    for name, w in workers.items():
        same = 0
        for a, b in zip(w.tokens, reference, strict=False):
            if a != b:
                break
            same += 1
        results[name].update(
            settings=w.ready["settings"],
            load_s=w.ready["load_s"],
            base_rss_mb=w.ready["base_rss"] / 2**20,
            peak_rss_mb=memory[name]["peak_rss"] / 2**20,
            row0_tokens=w.tokens,
            row0_prefix_same_as_tinyllm=same,
        )
    ratios(results)
    return results, skipped


def prompt_ids(rng: np.random.Generator, tokens: int, vocab: int) -> list[int]:
    """``tokens`` random ids in [100, 1000), kept below ``vocab`` (the tiny test models
    have 512 tokens)."""
    return [int(i) for i in rng.integers(100, min(1000, vocab), tokens)]


def memory_bandwidth(threads: int, mib: int = 1024) -> float:
    """Bytes/s of streaming reads over ``mib`` MiB (1 GiB: far past the caches): the best of
    a threaded numpy reduction and a numpy (OpenBLAS) matrix-vector product, 5 tries each."""
    from concurrent.futures import ThreadPoolExecutor

    data = np.ones(mib * 2**18, np.float32)
    chunks = np.array_split(data, threads)
    matrix, vector = data.reshape(-1, 4096), np.ones(4096, np.float32)

    def timed(fn: Callable[[], Any]) -> float:
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin

    with ThreadPoolExecutor(threads) as pool:
        reduce_s = min(timed(lambda: list(pool.map(np.sum, chunks))) for _ in range(5))
    gemv_s = min(timed(lambda: matrix @ vector) for _ in range(5))
    return data.nbytes / min(reduce_s, gemv_s)


def step_bytes(engine: Path | str | None, bundle: tinyllm.Bundle, precision: str) -> int:
    """Weight bytes one decode step reads: counted in tinyllm's exported graph when there
    is one (``engine``, a .tllm folder), else estimated from the config."""
    from tinyllm.runtime.roofline import graph_weights

    graphs = sorted(Path(engine).glob("engines/*/engine.json")) if engine else []
    if not graphs:
        return decode_bytes(bundle, precision)
    model = json.loads(graphs[0].read_text())["model"]
    return graph_weights(graphs[0].parent / model).decode_bytes


def floor_figures(row: dict[str, Any], bytes_per_step: int, bandwidth: float) -> dict[str, Any]:
    """The bandwidth-floor figures of one result row: weight bytes per step, weight GB/s
    achieved (decode steps/s times bytes), and that as a share of the read bandwidth."""
    steps_s = row["decode_tok_s"]["median"] / row["batch"]  # one step advances every row
    achieved = steps_s * bytes_per_step
    return {
        "decode_bytes_per_step": bytes_per_step,
        "achieved_gb_s": achieved / 1e9,
        "pct_floor": 100 * achieved / bandwidth,
    }


def decode_bytes(bundle: tinyllm.Bundle, precision: str) -> int:
    """Weight bytes one decode step reads, estimated from the config: every linear weight
    and the lm_head."""
    c = bundle.config
    params = c.num_parameters() - c.vocab_size * c.hidden_size  # minus the embedding lookup
    params += c.vocab_size * c.hidden_size  # the lm_head (tied or not) is read in full
    if precision == "fp32":
        return params * 4
    bits = 4 if precision == "int4" else 8
    return int(params * bits / 8 + params / 32 * 4)  # codes + an fp32 scale per 32 weights


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="smollm2-135m,qwen2.5-0.5b-shape")
    parser.add_argument("--precisions", default="fp32,int4")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--spin", choices=("on", "off"), default="on", help="thread spinning")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument(
        "--bandwidth-mib", type=int, default=1024, help="MiB read to measure the bandwidth"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time runs by wall clock, or by each worker's CPU time (with --threads 1 "
        "--spin off: the work, steady on a machine other jobs share)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="SmolLM2 int4, 32-token prompt, 16 new, 2 rounds"
    )
    parser.add_argument("--out-dir", type=Path, default=OUT, help="model cache and JSON")
    parser.add_argument("--out", type=Path, default=None, help="default OUT_DIR/decode_cpu.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.precisions = "smollm2-135m", "int4"
        args.prompt_tokens, args.new_tokens, args.rounds = 32, 16, 2
    args.out = args.out or args.out_dir / "decode_cpu.json"
    return args


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every (model, precision, batch): each engine's figures, settings, memory, skips."""
    args.out_dir.mkdir(parents=True, exist_ok=True)
    load = list(os.getloadavg())  # the machine's load when the run starts
    before = memory_bandwidth(args.threads, args.bandwidth_mib)
    rows: list[dict[str, Any]] = []
    weights: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    rng = np.random.default_rng(0)
    engines = args.engines.split(",")
    for name in args.models.split(","):
        for precision in args.precisions.split(","):
            paths = prepare(name, precision, engines, args.out_dir, args.block_size)
            bundle = tinyllm.open_bundle(args.out_dir / f"{name}.tllm")
            ours = paths.get("tinyllm")
            weights[f"{name} {precision}"] = step_bytes(
                ours if isinstance(ours, Path) else None, bundle, precision
            )
            batches = [int(b) for b in args.batches.split(",")]
            vocab = bundle.config.vocab_size
            prompts = [prompt_ids(rng, args.prompt_tokens, vocab) for _ in range(8)]
            for batch in batches:
                rows_prompts = [prompts[i % len(prompts)] for i in range(batch)]
                results, skips = run_case(paths, rows_prompts, args, precision)
                case = {"model": name, "precision": precision, "batch": batch}
                skipped += [{**case, "engine": e, "reason": r} for e, r in skips.items()]
                rows += [{**case, "engine": e, **r} for e, r in results.items()]
    after = memory_bandwidth(args.threads, args.bandwidth_mib)
    cpu = cpu_info()
    bandwidth = max(before, after)  # the floor uses the better of before and after the runs
    for row in rows:
        row.update(floor_figures(row, weights[f"{row['model']} {row['precision']}"], bandwidth))
    return {
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "cpu": {"model": cpu.model, "isa": cpu.isa},
            "platform": platform.platform(),
            "read_bandwidth_gb_s": bandwidth / 1e9,
            "read_bandwidth_before_after_gb_s": [before / 1e9, after / 1e9],
            "load_average_before": load,
        },
        "decode_bytes_per_step": weights,
        "settings": {k: str(v) for k, v in vars(args).items()}
        | {"idle_peers": "stopped (SIGSTOP) while another engine runs"},
        "rows": rows,
        "skipped": skipped,
    }


def table(report: dict[str, Any]) -> str:
    """The report as text: one line per engine and case, then the skipped peers."""

    def cell(s: dict[str, float], scale: float = 1.0, fmt: str = ".1f") -> str:
        lo, mid, hi = (scale * s[k] for k in ("min", "median", "max"))
        return f"{mid:{fmt}} [{lo:{fmt}}-{hi:{fmt}}]"

    s = report["settings"]
    cpu = report["machine"].get("cpu", {})  # reports written before it was recorded lack it
    lines = [
        f"{cpu.get('model', 'cpu')} ({' '.join(cpu.get('isa', []))}); "
        f"read bandwidth {report['machine']['read_bandwidth_gb_s']:.1f} GB/s; every engine "
        f"{s['threads']} threads, spinning {s['spin']}, {s.get('clock', 'wall')} clock; "
        f"{s['prompt_tokens']}-token prompt, "
        f"{s['new_tokens']} new tokens, median [min-max] of {s['rounds']} rounds",
        *(
            f"{case}: {n / 1e6:.1f} MB of weights read per decode step"
            for case, n in report.get("decode_bytes_per_step", {}).items()
        ),
        f"{'model':<19}{'prec':<6}{'b':>2}  {'engine':<18}{'TTFT ms':>20}{'decode tok/s':>22}"
        f"{'tinyllm x':>20}{'TTFT x':>8}{'RSS MiB':>9}{'GB/s':>7}{'% floor':>8}",
    ]
    for r in report["rows"]:
        speedup = cell(r["tinyllm_speedup"], fmt=".2f") if "tinyllm_speedup" in r else "-"
        ttft_x = f"{r['tinyllm_ttft_ratio']['median']:.2f}" if "tinyllm_ttft_ratio" in r else "-"
        lines.append(
            f"{r['model']:<19}{r['precision']:<6}{r['batch']:>2}  {r['engine']:<18}"
            f"{cell(r['ttft_s'], 1000, '.0f'):>20}{cell(r['decode_tok_s']):>22}"
            f"{speedup:>20}{ttft_x:>8}{r['peak_rss_mb']:>9.0f}{r['achieved_gb_s']:>7.1f}"
            f"{r['pct_floor']:>7.0f}%"
        )
    for skip in report["skipped"]:
        lines.append(
            f"skipped {skip['engine']} ({skip['model']} {skip['precision']} batch "
            f"{skip['batch']}): {skip['reason']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = benchmark(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
