"""``tinyllm distill --num-processes N``: the same command again in N data-parallel processes.

The command is relaunched under torchrun (``torch.distributed.run --standalone``), which
sets ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` for each process; accelerate then joins them
in one process group (gloo on CPU, NCCL on GPUs) and trl's trainer splits every global
batch across them. On GPU clusters, and for DeepSpeed or FSDP, start the command with
``accelerate launch`` instead (docs/distill.md).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from tinyllm.errors import ConfigError


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def launch_command(processes: int, argv: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``tinyllm ARGV`` in ``processes`` processes."""
    if processes < 2:
        raise ConfigError(f"--num-processes must be >= 2 to launch, got {processes}")
    args = without_option(argv, "--num-processes")
    pairs = zip(args, [*args[1:], ""], strict=True)
    if not any(a == "--backend=trl" or (a, b) == ("--backend", "trl") for a, b in pairs):
        raise ConfigError("--num-processes needs --backend trl: the own loop trains in one process")
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "tinyllm.cli", *args,
    ]  # fmt: skip


def relaunch(processes: int, argv: Sequence[str]) -> int:
    """Run the command in ``processes`` processes; their exit code (0 when all succeed)."""
    return subprocess.call(launch_command(processes, argv))
