"""The built-in multi-task suite: data builders, fetched/generated offline, cached, checked.

Each builder turns (sizes, seed) into fixed train/validation/test splits. Data is never
committed: ``tinyllm data prepare`` builds it into the cache, where a ``checksums.json``
records each split's sha256 (identical across runs for the same sizes and seed).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from tinyllm.cache import cache_dir
from tinyllm.errors import TaskError, missing_dependency
from tinyllm.tasks import (
    BUILTIN,
    SPLITS,
    Example,
    Split,
    Suite,
    TaskSpec,
    load_suite,
    read_examples,
    write_examples,
)

Builder = Callable[[dict[str, int], int, Path], dict[str, list[Example]]]
# Bump when a builder's output changes, so cached data is rebuilt.
BUILDER_VERSION = 2


def builtin_suite_path() -> Path:
    """Path of the built-in suite YAML shipped with tinyllm."""
    return Path(str(resources.files("tinyllm.suite").joinpath("builtin.yaml")))


def load_tasks(tasks: str | os.PathLike[str] = BUILTIN) -> Suite:
    """Load a suite file; ``"builtin"`` is the built-in six-task suite."""
    return load_suite(builtin_suite_path() if str(tasks) == BUILTIN else tasks)


def builders() -> dict[str, Builder]:
    """Builder name -> function. Imported lazily: builders need the ``suite`` extra."""
    try:
        from tinyllm.suite import arithmetic, booking, dates, intents, rewrite, sentiment
    except ImportError as e:
        raise missing_dependency(str(e.name), "suite", "Building the task suite's data") from e
    return {
        "vader-sentiment": sentiment.build,
        "deepmind-arithmetic": arithmetic.build,
        "travel-booking": booking.build,
        "assistant-intents": intents.build,
        "date-normalization": dates.build,
        "query-rewrite": rewrite.build,
    }


def data_dir(task: TaskSpec) -> Path:
    """Cache folder of a builder task's splits (keyed by builder, sizes, seed, version)."""
    key = json.dumps(
        [task.data.builder, task.data.sizes, task.data.seed, BUILDER_VERSION], sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / "data" / f"{task.data.builder}-{digest}"


def split_path(suite: Suite, task: TaskSpec, split: Split) -> Path:
    """Where a split's JSONL lives: the builder cache, or the spec's file."""
    if task.data.builder is not None:
        return data_dir(task) / f"{split}.jsonl"
    name = getattr(task.data, split)
    if name is None:
        raise TaskError(f"task {task.name!r} names no {split} file")
    return suite.root / name


def load_split(
    suite: Suite, task: TaskSpec, split: Split, limit: int | None = None
) -> list[Example]:
    """Read one split of a task (``limit`` keeps the first N examples)."""
    examples = read_examples(split_path(suite, task, split), f"task {task.name!r}")
    return examples[:limit] if limit is not None else examples


def prepare(task: TaskSpec, force: bool = False) -> dict[str, str]:
    """Build a builder task's splits into the cache (if missing); return their sha256."""
    if task.data.builder is None:
        raise TaskError(f"task {task.name!r} reads its data from files; nothing to prepare")
    table = builders()
    if task.data.builder not in table:
        raise TaskError(
            f"task {task.name!r}: unknown data builder {task.data.builder!r}; "
            f"known builders: {', '.join(table)}"
        )
    folder = data_dir(task)
    checksums = folder / "checksums.json"
    if checksums.is_file() and not force:
        recorded: dict[str, str] = json.loads(checksums.read_text())
        if all(file_digest(folder / f"{s}.jsonl") == recorded.get(s) for s in SPLITS):
            return recorded
    # Some generators (Faker locales, mathematics_dataset) iterate over sets, whose order
    # depends on Python's string-hash seed: build in a child with a fixed seed, so the same
    # spec gives the same bytes in every process.
    spec = json.dumps(
        {
            "builder": task.data.builder,
            "sizes": task.data.sizes,
            "seed": task.data.seed,
            "folder": str(folder),
        }
    )
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    code = "import sys; from tinyllm.suite import build_into; build_into(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-c", code, spec], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise TaskError(
            f"task {task.name!r}: building its data failed: {lines[-1] if lines else '?'}"
        )
    return dict(json.loads(checksums.read_text()))


def prepare_tasks(tasks: Iterable[TaskSpec], force: bool = False) -> dict[str, dict[str, str]]:
    """Build the data of every builder task among ``tasks`` (tasks with files are skipped).

    Returns task name -> split -> sha256 of the split file, for the builder tasks.
    """
    return {t.name: prepare(t, force) for t in tasks if t.data.builder is not None}


def build_into(spec_json: str) -> None:
    """Run one builder and write its splits and checksums.json (the child side of prepare)."""
    spec = json.loads(spec_json)
    folder = Path(spec["folder"])
    splits = builders()[spec["builder"]](spec["sizes"], spec["seed"], cache_dir() / "downloads")
    digests: dict[str, str] = {}
    for split in SPLITS:
        write_examples(folder / f"{split}.jsonl", splits[split])
        digests[split] = hashlib.sha256((folder / f"{split}.jsonl").read_bytes()).hexdigest()
    (folder / "checksums.json").write_text(json.dumps(digests, indent=2, sort_keys=True))


def file_digest(path: Path) -> str | None:
    """sha256 of a file, or None if it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
