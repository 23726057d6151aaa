"""``tinyllm profile``: run the runtime's profiler, write its files, apply within an SLO."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
    from tinyllm.runtime.profileoptions import ProfileOptions
    from tinyllm.runtime.profilereport import ProfileReport


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
