"""The curriculum's own state in a trl checkpoint, so an interrupted run resumes as if it
had never stopped.

trl's checkpoint (``RUN_DIR/curriculum-stageN/checkpoint-S/``) holds the shared
adapter, the optimizer, the schedule and the trainer's RNG. The curriculum adds what only
it knows: the task of every batch drawn so far (which also says how far each task's
seeded order has gone), each sampler's RNG state and active tasks, and in stage 3 the
per-task early-stopping records and best snapshots. They are written into the same
checkpoint folder, after trl's files, as ``curriculum.json`` (last, atomically) and
``curriculum-snapshots.safetensors``. They are working state of a run, not an artifact:
no bundle is edited or half-written; the bundle is written once, at the end, naming its
parent (docs/bundle.md).

``curriculum.json`` names the run it belongs to (:func:`run_identity`: tasks, stage-1
decisions, training and curriculum settings, the loss) and the sha256 of the checkpoint's
files. :func:`load_state` refuses, with what differs, a checkpoint of another run, one
whose files changed since (a corrupted adapter or optimizer state), and a checkpoint
without curriculum state.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinyllm.distill.curriculum import EarlyStopping, MixtureSampler, TaskStop
from tinyllm.errors import CheckpointError

if TYPE_CHECKING:
    from tinyllm.adapters import LoraAdapter

SCHEMA = 1
STATE_FILE = "curriculum.json"
SNAPSHOT_FILE = "curriculum-snapshots.safetensors"
# trl's files that decide how training continues (rank 0's; other ranks' RNG files may
# still be being written when rank 0 saves this state).
TRAINER_FILES = (
    "adapter_model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "trainer_state.json",
    SNAPSHOT_FILE,
)


@dataclass
class CurriculumState:
    """What the curriculum adds to one checkpoint of a stage."""

    stage: str  # "stage 2" or "stage 3"
    step: int  # the stage's optimizer steps done
    drawn: list[str]  # the task of every batch drawn since stage 2 began, in order
    samplers: dict[str, dict[str, Any]]  # name -> {"active": [...], "rng": [...]}
    stops: dict[str, TaskStop] = field(default_factory=dict)  # stage 3's records
    snapshots: dict[str, LoraAdapter] = field(default_factory=dict)  # stage 3's bests


def run_identity(
    decisions: Sequence[Any], train: Any, curriculum: Any, loss: str
) -> dict[str, Any]:
    """What must be equal for a checkpoint to continue this run (JSON-ready)."""
    return {
        "tasks": {d.task: [d.stage, d.n_train] for d in decisions},
        "train": json.loads(json.dumps(dataclasses.asdict(train))),
        "curriculum": dataclasses.asdict(curriculum),
        "loss": loss,
    }


def sampler_state(sampler: MixtureSampler) -> dict[str, Any]:
    """A sampler's active tasks and RNG state (JSON-ready)."""
    version, internal, gauss = sampler.rng.getstate()
    return {"active": sorted(sampler.active), "rng": [version, list(internal), gauss]}


def restore_sampler(sampler: MixtureSampler, state: Mapping[str, Any]) -> None:
    """Put a sampler back in the state :func:`sampler_state` recorded."""
    version, internal, gauss = state["rng"]
    sampler.rng.setstate((version, tuple(internal), gauss))
    sampler.active = set(state["active"])


def restore_stops(stopper: EarlyStopping, stops: Mapping[str, TaskStop]) -> None:
    """Put the early-stopping records back (the tasks must be the same)."""
    stopper.tasks = {name: dataclasses.replace(stops[name]) for name in stopper.tasks}


def save_state(folder: Path, state: CurriculumState, run: Mapping[str, Any]) -> None:
    """Write ``state`` into the checkpoint ``folder`` (after trl wrote its files)."""
    from tinyllm.durability import write_text_atomic
    from tinyllm.integrity import file_sha256
    from tinyllm.tensorfile import save_tensors

    if state.snapshots:
        tensors = {
            f"{task}/{name}": value
            for task, adapter in state.snapshots.items()
            for name, value in adapter.tensors.items()
        }
        save_tensors(folder / SNAPSHOT_FILE, tensors, {"format": "tinyllm-curriculum"})
    files = {n: file_sha256(folder / n) for n in TRAINER_FILES if (folder / n).is_file()}
    payload = {
        "schema": SCHEMA,
        "stage": state.stage,
        "step": state.step,
        "run": run,
        "drawn": state.drawn,
        "samplers": state.samplers,
        "stops": {n: dataclasses.asdict(s) for n, s in state.stops.items()},
        "snapshots": sorted(state.snapshots),
        "files": files,
    }
    write_text_atomic(folder / STATE_FILE, json.dumps(payload, indent=1))


def load_state(folder: Path, stage: str, run: Mapping[str, Any], train: Any) -> CurriculumState:
    """The curriculum state of checkpoint ``folder`` of ``stage``, checked against this run
    (``run``: :func:`run_identity`; ``train``: the TrainConfig, for the snapshots' LoRA).

    Raises CheckpointError if the state is missing or unreadable, belongs to another run
    or stage, or a file of the checkpoint changed since it was saved.
    """
    payload = read_payload(folder)
    where = f"curriculum checkpoint {folder}"
    if payload.get("schema") != SCHEMA:
        raise CheckpointError(
            f"{where}: schema {payload.get('schema')!r}, this tinyllm reads {SCHEMA}"
        )
    step = folder.name.rsplit("-", 1)[-1]
    if payload.get("stage") != stage or str(payload.get("step")) != step:
        raise CheckpointError(
            f"{where}: its state is of {payload.get('stage')} step {payload.get('step')}, but "
            f"the folder is {stage} step {step}; it was moved or mixed up with another run's"
        )
    differ = identity_differences(payload.get("run", {}), run)
    if differ:
        raise CheckpointError(
            f"{where} belongs to another run ({'; '.join(differ)}); resume with the same "
            "tasks, data and settings, or start over with a new --run-dir"
        )
    check_files(folder, payload.get("files", {}), where)
    try:
        stops = {n: TaskStop(**{**s, "history": [tuple(h) for h in s["history"]]})
                 for n, s in payload["stops"].items()}  # fmt: skip
        return CurriculumState(
            stage, int(step), list(payload["drawn"]), dict(payload["samplers"]), stops,
            read_snapshots(folder, payload["snapshots"], train),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {STATE_FILE} is malformed ({e!r})") from e


def read_payload(folder: Path) -> dict[str, Any]:
    """``curriculum.json`` of a checkpoint as a dict, or a CheckpointError saying why not."""
    path = folder / STATE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {folder} has no {STATE_FILE}: it was not written by a curriculum run, "
            "or the run stopped while saving it; delete that checkpoint folder to resume from "
            "the one before"
        )
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); delete that checkpoint folder") from e
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a JSON object; delete that checkpoint folder")
    return payload


def identity_differences(saved: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """``key: saved != now`` for every setting of the run that differs (nested keys dotted)."""
    found = []
    for key in sorted(set(saved) | set(run)):
        a, b = saved.get(key), run.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "tasks":
            found += [f"{key}.{d}" for d in identity_differences(a, b)]
        elif a != b:
            found.append(f"{key}: {a!r} in the checkpoint, {b!r} now")
    return found


def check_files(folder: Path, files: Mapping[str, str], where: str) -> None:
    """Raise CheckpointError unless each listed file still has its recorded sha256."""
    from tinyllm.integrity import file_sha256

    if "adapter_model.safetensors" not in files:
        raise CheckpointError(f"{where}: the state lists no adapter file; delete that folder")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{where}: {name} is missing; delete that checkpoint folder")
        if file_sha256(path) != digest:
            raise CheckpointError(
                f"{where}: {name} changed since the checkpoint was saved (sha256 differs); "
                "delete that checkpoint folder to resume from the one before"
            )


def read_snapshots(folder: Path, tasks: Sequence[str], train: Any) -> dict[str, LoraAdapter]:
    """Stage 3's best snapshots of ``tasks`` from the checkpoint's snapshot file."""
    if not tasks:
        return {}
    from safetensors.numpy import load_file

    from tinyllm.adapters import LoraAdapter

    tensors = load_file(str(folder / SNAPSHOT_FILE))
    out = {}
    for task in tasks:
        prefix = f"{task}/"
        mine = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not mine:
            raise CheckpointError(f"checkpoint {folder}: no snapshot tensors of task {task!r}")
        out[task] = LoraAdapter(train.rank, float(train.alpha), tuple(train.targets), mine)
    return out
