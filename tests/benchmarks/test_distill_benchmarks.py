"""The distillation benchmarks: trl_speed.py (our training loop against trl's) and
labelling.py (a live `tinyllm serve` as the teacher)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def test_trl_speed_benchmark_end_to_end(
    bench: Path, tiny_llama_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trl_speed.py's main: both backends train the tiny model for real, for SFT and GRPO;
    the JSON has the best rate of each, and each rate fits inside the call's wall time."""
    import time

    import trl_speed

    runs: list[tuple[str, int, float, float]] = []  # backend, steps, rate, seconds outside
    real = trl_speed.steps_per_second

    def timed(bundle: Path, backend: str, steps: int, batch: int, method: str = "sft") -> float:
        start = time.perf_counter()
        rate = real(bundle, backend, steps, batch, method)
        runs.append((backend, steps, rate, time.perf_counter() - start))
        return rate

    monkeypatch.setattr(trl_speed, "steps_per_second", timed)
    out = tmp_path / "trl.json"
    for method in ("sft", "grpo"):
        runs.clear()
        trl_speed.main(
            [
                "--bundle", str(tiny_llama_bundle), "--steps", "2", "--batch-size", "2",
                "--rounds", "1", "--method", method, "--json", str(out),
            ]
        )  # fmt: skip
        record = json.loads(out.read_text())
        assert record["settings"]["method"] == method
        best = record["steps_per_s"]
        # A trl warm-up, then own and trl in turn each round; the best rate of each backend.
        assert [(b, n) for b, n, _, _ in runs] == [("trl", 2), ("own", 2), ("trl", 2)]
        assert best == {b: max(r for b2, _, r, _ in runs[1:] if b2 == b) for b in ("own", "trl")}
        assert record["trl_over_own"] == pytest.approx(best["trl"] / best["own"])
        for _, steps, rate, seconds in runs:
            # The timed span lies inside the call: at least steps / (the call's wall time).
            assert steps / seconds <= rate < float("inf")


def test_labelling_benchmark_end_to_end(
    bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """labelling.py's main: a live `tinyllm serve` of tiny-qwen2 labels every input at
    each concurrency, journals and all; --task without --bundle is refused."""
    import time

    import labelling

    out, work = tmp_path / "labelling.json", tmp_path / "work"
    start = time.perf_counter()
    labelling.main(
        [
            "--inputs", "4", "--concurrency", "1,2", "--rounds", "1", "--max-batch", "2",
            "--work", str(work), "--json", str(out),
        ]
    )  # fmt: skip
    wall = time.perf_counter() - start
    rates = json.loads(out.read_text())
    assert list(rates) == ["1", "2"]
    for c, rate in rates.items():
        # 4 inputs in less than the whole run (build, start and warm-up included).
        assert 4 / wall < rate < float("inf")
        stats = json.loads((work / f"c{c}" / "sentiment.stats.json").read_text())
        assert stats["inputs"] == stats["labelled"] == 4, stats
    assert len(labelling.inputs(5)) == len(set(labelling.inputs(5))) == 5
    assert len(set(labelling.task_inputs("booking", 3))) == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        labelling.main(["--task", "booking"])
    assert refused.value.code == 2 and "give --bundle too" in capsys.readouterr().err
