"""``tinyllm profile``: run the runtime's profiler, write its files, apply within an SLO."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tinyllm.runtime.profileoptions import ProfileOptions

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
    from tinyllm.runtime.profilereport import ProfileReport

PathLike = str | os.PathLike[str]


def profile_bundle(
    bundle: Bundle,
    options: ProfileOptions,
    *,
    threads: int | None,
    compare: Sequence[Bundle],
    sweep: Sequence[str],
    slo_p95_ms: float | None,
    apply: bool,
    out: Path | None,
    progress: bool,
) -> ProfileReport:
    """Profile ``bundle`` (and ``compare``), write the report files into ``out`` if given.

    Raises SLONotMetError (with the report) when ``apply`` finds no setting within the SLO.
    """
    from tinyllm.runtime.profilereport import run_profile
    from tinyllm.runtime.profilesweep import SLONotMetError

    report = run_profile(
        bundle,
        options,
        threads=threads,
        compare=list(compare),
        sweep=sweep,
        slo_ms=slo_p95_ms,
        apply=apply,
        out=out,
        progress=progress_bars if progress else None,
    )
    if out is not None:
        report.files = report.write(out)
    if apply and report.slo_error:
        raise SLONotMetError(f"{report.slo_error}; --apply wrote nothing", report)
    return report


def progress_bars(label: str, total: int) -> Callable[[], None]:
    """A tqdm bar on stderr for one pass; the returned function advances it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="req", leave=False)

    def tick() -> None:
        bar.update()
        if bar.n >= total:
            bar.close()

    return tick


def profile(
    bundle: PathLike,
    *,
    engine: str | None = ProfileOptions.engine,
    runtime: str = ProfileOptions.runtime,
    workload: str = ProfileOptions.workload,
    requests: int = ProfileOptions.requests,
    rate: float | None = ProfileOptions.rate,
    concurrency: int | None = ProfileOptions.concurrency,
    prompt_len: int | None = ProfileOptions.prompt_len,
    new_tokens: int | None = ProfileOptions.new_tokens,
    threads: int | None = None,
    compare: Sequence[PathLike] = (),
    sweep: Sequence[str] = (),
    slo_p95_ms: float | None = None,
    apply: bool = False,
    out: PathLike | None = "profile-out",
    ops: bool = ProfileOptions.ops,
    overhead: bool = ProfileOptions.overhead,
    bandwidth_mib: int = ProfileOptions.bandwidth_mib,
    progress: bool = True,
) -> ProfileReport:
    """Profile a bundle's engine on this machine: latency, phases, operators, roofline,
    memory; compare bundles, sweep settings, recommend (and apply) the fastest within an
    SLO. See docs/profile.md.

    Args:
        bundle: an exported bundle.
        engine: which engine (default: the CPU one).
        runtime: ``python``, or ``cpp``: libtinyllm's server (``make cpp`` builds it) on
            the bundle's tasks; its report has the latency, phase (ONNX Runtime against the
            rest), roofline and memory sections, and says why the others are absent.
        workload: ``builtin`` (the bundle's tasks, or plain completions), a suite YAML, or
            a JSONL file of requests (``{"task": ..., "input": ...}`` or ``{"prompt": ...}``).
        requests: requests of the pass under load (a JSONL file is cycled to this many).
        rate: arrivals per second (Poisson, open loop); else ``concurrency`` in flight.
        concurrency: requests in flight (default: the engine's max_batch).
        prompt_len, new_tokens: plain completions of exactly these lengths (builtin).
        threads: ONNX Runtime intra-op threads (default: the engine's serving.json, else
            every CPU this process may use).
        compare: more bundles profiled with the same workload, side by side.
        sweep: ``KEY=V1,V2`` settings to measure (threads, max_batch, ...), every combination.
        slo_p95_ms: recommend the highest-throughput setting with p95 end-to-end latency
            within this; ``apply`` writes it into the bundle's ``engines/NAME/serving.json``
            (raises SLONotMetError, writing nothing, when no setting meets it).
        out: folder for profile.json, report.html and trace.json (None: write nothing).
        ops: run the operators pass (ONNX Runtime's profiler).
        overhead: also measure what recording costs (pass 2 with and without it,
            interleaved over 5 rounds: the median and range of the latency ratio).
        bandwidth_mib: the buffer the memory bandwidth is measured over.
        progress: progress bars on stderr.
    """
    from tinyllm.bundle import Bundle

    options = ProfileOptions(
        engine=engine,
        runtime=runtime,
        workload=workload,
        requests=requests,
        rate=rate,
        concurrency=concurrency,
        prompt_len=prompt_len,
        new_tokens=new_tokens,
        ops=ops,
        overhead=overhead,
        bandwidth_mib=bandwidth_mib,
    )
    return profile_bundle(
        Bundle.open(bundle),
        options,
        threads=threads,
        compare=[Bundle.open(b) for b in compare],
        sweep=sweep,
        slo_p95_ms=slo_p95_ms,
        apply=apply,
        out=Path(out) if out is not None else None,
        progress=progress,
    )
