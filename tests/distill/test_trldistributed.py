"""`tinyllm distill --backend trl --num-processes 2`: two processes on CPU (gloo), end to end.

The 2-process run trains on the same global batches as the 1-process run, so its losses
and adapters equal the 1-process run's within float tolerance; only rank 0 writes the
bundle and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trl as _trl  # noqa: F401  (the dev extra installs trl: a broken install fails)

import tinyllm
from tinyllm.distill.launch import launch_command, without_option
from tinyllm.distill.trlrun import checkpoint_losses, latest_checkpoint
from tinyllm.errors import ConfigError

TOL = 1e-4  # the gloo all-reduce sums the two halves' gradients in another order


def distill(suite: Path, base: Path, out: Path, processes: int) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "tinyllm"
    args = [
        str(cli), "distill", str(suite), "--teacher", "oracle", "--student", str(base),
        "-o", str(out / "student.tllm"), "--steps", "4", "--batch-size", "4",
        "--train-limit", "16", "--eval-limit", "2", "--rank", "2", "--backend", "trl",
        "--run-dir", str(out / "runs"), "--checkpoint-every", "4",
        "--json", str(out / "report.json"), "--num-processes", str(processes),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.timeout(900)
def test_two_processes_give_the_one_process_losses_and_only_rank_0_writes(
    color_suite: Path, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    runs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        done = distill(color_suite, tiny_llama_bundle, out, n)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stderr.count("wrote ") == 1, done.stderr  # rank 0 alone writes
        assert done.stdout.count("wrote ") == 1, done.stdout  # ... and reports
        runs[n] = out
    for task in ("color", "shade"):
        losses = [
            checkpoint_losses(str(latest_checkpoint(str(runs[n] / "runs" / task)))) for n in (1, 2)
        ]
        assert len(losses[0]) == 4
        states = [
            json.loads(
                (
                    Path(str(latest_checkpoint(str(runs[n] / "runs" / task))))
                    / "trainer_state.json"
                ).read_text()
            )
            for n in (1, 2)
        ]
        # Each of the 2 processes took half of every global batch of 4.
        assert [s["train_batch_size"] for s in states] == [4, 2]
        np.testing.assert_allclose(losses[1], losses[0], rtol=0, atol=TOL, err_msg=task)
        one, two = (tinyllm.open_bundle(runs[n] / "student.tllm") for n in (1, 2))
        a, b = one.adapter(task), two.adapter(task)
        for name, value in a.tensors.items():
            np.testing.assert_allclose(b.tensors[name], value, atol=1e-4, err_msg=name)
    report = json.loads((runs[2] / "report.json").read_text())
    assert [r["task"] for r in report["rows"]] == ["color", "shade"]
    # The report names the TensorBoard logs, which are there for every task.
    assert report["tensorboard"] == str(runs[2] / "runs")
    assert f"tensorboard --logdir {runs[2] / 'runs'}" in done.stdout
    for task in ("color", "shade"):
        assert list((runs[2] / "runs" / task / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.timeout(900)
def test_the_curriculum_on_two_processes_gives_the_one_process_run(
    color_suite: Path, tiny_llama_bundle: Path, tmp_path: Path
) -> None:
    """Each step's mixture batch, drawn as the step starts, is split over the processes as
    the trainer splits a laid-out dataset: the same per-task losses, decisions, adapters."""
    cli = Path(sys.executable).parent / "tinyllm"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    reports = []
    for n in (1, 2):
        out = tmp_path / f"p{n}"
        args = [
            str(cli), "distill", str(color_suite), "--student", str(tiny_llama_bundle),
            "-o", str(out / "student.tllm"), "--curriculum", "--steps", "4",
            "--batch-size", "4", "--train-limit", "16", "--eval-limit", "2", "--rank", "2",
            "--backend", "trl", "--json", str(out / "report.json"), "--num-processes", str(n),
        ]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stderr.count("wrote ") == 1, done.stderr  # rank 0 alone writes
        reports.append(json.loads((out / "report.json").read_text()))
    assert reports[1]["decisions"] == reports[0]["decisions"]
    assert reports[0]["tensorboard"] is None  # no --run-dir: the logs went to a temporary folder
    for one, two in zip(reports[0]["rows"], reports[1]["rows"], strict=True):
        assert (two["task"], two["steps"]) == (one["task"], one["steps"])
        assert two["loss_first"] == pytest.approx(one["loss_first"], abs=TOL)
        assert two["loss_last"] == pytest.approx(one["loss_last"], abs=TOL)
    one, two = (tinyllm.open_bundle(tmp_path / f"p{n}" / "student.tllm") for n in (1, 2))
    for task in ("color", "shade"):
        for name, value in one.adapter(task).tensors.items():
            np.testing.assert_allclose(two.adapter(task).tensors[name], value, atol=1e-4)


def test_the_launch_command() -> None:
    argv = ["distill", "s.yaml", "--backend", "trl", "--num-processes", "2", "--steps", "3"]
    command = launch_command(2, argv)
    assert command[1:6] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
    ]  # fmt: skip
    assert command[6:] == ["tinyllm.cli", "distill", "s.yaml", "--backend", "trl", "--steps", "3"]
    assert without_option(["a", "--num-processes=4", "b"], "--num-processes") == ["a", "b"]
    with pytest.raises(ConfigError, match="needs --backend trl"):
        launch_command(2, ["distill", "s.yaml", "--num-processes", "2"])
    with pytest.raises(ConfigError, match=">= 2"):
        launch_command(1, ["distill", "--backend", "trl"])
