"""Decode against the memory-bandwidth floor, prefill FLOP/s, and what the engine holds
in memory, for ``tinyllm profile``.

Decode on a CPU is bound by memory bandwidth: each step reads every weight once,
whatever the batch, so bytes of weights read per step over the machine's read
bandwidth is the floor of a step's time. The bandwidth is measured here, on this
machine, now: the best of a threaded numpy reduction and a matrix-vector product over a
buffer larger than the caches.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# ONNX TensorProto data types -> bytes per element (the ones exported graphs use).
ITEMSIZE = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}
MATMULS = {"MatMul", "Gemm", "MatMulNBits"}
# Row lookups: a step reads only the rows of its tokens (an int4 table shared with the lm
# head is still read in full, by the lm head's MatMulNBits).
LOOKUPS = {"Gather", "GatherBlockQuantized"}


@dataclass(frozen=True)
class GraphWeights:
    """What the exported graph's weights cost per decode step."""

    resident_bytes: int  # every initializer (what the session keeps in memory)
    decode_bytes: int  # read in full by every step: all but row lookups (LOOKUPS)
    matmul_params: int  # weights of matrix products (2 FLOPs each per token)
    lm_head_bytes: int  # the lm head's share of decode_bytes


def graph_weights(model: Path) -> GraphWeights:
    """Weight bytes and matmul parameters of an exported graph (external data not read)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    sizes = {
        t.name: int(np.prod(t.dims, dtype=np.int64)) * ITEMSIZE.get(t.data_type, 4)
        for t in graph.initializer
    }
    dims = {t.name: list(t.dims) for t in graph.initializer}
    read: set[str] = set()
    params = 0
    head = 0
    for node in graph.node:
        weights = [n for n in node.input if n in sizes]
        if node.op_type not in LOOKUPS:
            read.update(weights)
        if node.op_type == "MatMulNBits":
            attrs = {a.name: a.i for a in node.attribute}
            params += attrs.get("K", 0) * attrs.get("N", 0)
        elif node.op_type in MATMULS and weights:
            params += int(np.prod(dims[weights[0]], dtype=np.int64))
        if node.op_type in MATMULS and any(
            w.startswith("lm_head") or w == "model.embed_tokens.weight" for w in weights
        ):
            head += sum(sizes[w] for w in weights)
    return GraphWeights(sum(sizes.values()), sum(sizes[n] for n in read), params, head)


def memory_bandwidth(threads: int, mib: int = 256, tries: int = 3) -> float:
    """Bytes/s of streaming reads over ``mib`` MiB with ``threads`` threads (best try)."""
    data = np.ones(mib * 2**20 // 4, np.float32)
    chunks = np.array_split(data, max(threads, 1))
    matrix, vector = data.reshape(-1, 1024), np.ones(1024, np.float32)
    best = float("inf")
    with ThreadPoolExecutor(max(threads, 1)) as pool:
        for _ in range(tries):
            start = time.perf_counter()
            list(pool.map(np.sum, chunks))
            best = min(best, time.perf_counter() - start)
            start = time.perf_counter()
            matrix @ vector
            best = min(best, time.perf_counter() - start)
    return data.nbytes / best


@dataclass(frozen=True)
class Roofline:
    """Decode speed against the bandwidth floor, and prefill FLOP/s."""

    bandwidth_gb_s: float
    decode_bytes_per_step: int
    lm_head_bytes: int
    floor_step_ms: float
    decode_step_ms: float  # mean ONNX Runtime run of a decode step
    achieved_gb_s: float
    share_of_floor: float  # floor_step_ms / decode_step_ms
    prefill_tokens: int
    prefill_gflop_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def roofline(
    weights: GraphWeights,
    bandwidth: float,
    decode_runs: list[float],
    prefill_s: float,
    prefill_tokens: int,
) -> Roofline:
    """The roofline figures of one profile.

    Args:
        weights: the graph's weights (:func:`graph_weights`).
        bandwidth: measured read bandwidth, bytes/s.
        decode_runs: seconds of each decode step's ONNX Runtime run.
        prefill_s: seconds of ONNX Runtime prefill runs in all.
        prefill_tokens: prompt tokens those runs prefilled.
    """
    step = float(np.mean(decode_runs)) if decode_runs else 0.0
    floor = weights.decode_bytes / bandwidth if bandwidth > 0 else 0.0
    flops = 2.0 * weights.matmul_params * prefill_tokens
    return Roofline(
        bandwidth / 1e9,
        weights.decode_bytes,
        weights.lm_head_bytes,
        floor * 1e3,
        step * 1e3,
        weights.decode_bytes / step / 1e9 if step > 0 else 0.0,
        floor / step if step > 0 else 0.0,
        prefill_tokens,
        flops / prefill_s / 1e9 if prefill_s > 0 else 0.0,
    )


def roofline_section(
    weights: GraphWeights,
    threads: int,
    bandwidth_mib: int,
    decode_runs: list[float],
    prefill_s: float,
    prefill_tokens: int,
) -> dict[str, Any]:
    """A profile's roofline section: bandwidth measured here with ``threads`` threads over
    ``bandwidth_mib`` MiB, the figures of :func:`roofline`, the threads and matmul
    parameters."""
    bandwidth = memory_bandwidth(threads, bandwidth_mib)
    roof = roofline(weights, bandwidth, decode_runs, prefill_s, prefill_tokens)
    return {**roof.to_dict(), "threads": threads, "matmul_params": weights.matmul_params}


def peak_rss() -> int:
    """Peak resident memory of this process so far, bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss() -> int:
    """Resident memory of this process now, bytes (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
