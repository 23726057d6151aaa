"""``tinyllm data label``: label a suite's inputs with a teacher, task by task."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinyllm.errors import ConfigError

if TYPE_CHECKING:
    from tinyllm.distill.labelling import LabelStats
    from tinyllm.distill.teachers import Teacher

PathLike = str | os.PathLike[str]

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class LabelOptions:
    """How inputs are labelled (the arguments of :func:`tinyllm.api.label_data`)."""

    split: str = "train"
    k: int = 4
    limit: int | None = None
    batch_size: int = 16
    temperature: float = 0.7
    few_shot: int = 0
    concurrency: int = 1
    shard: str | None = None  # "I/N": label only shard I of N (tinyllm.distill.labelpool)
    requests_per_second: float | None = None  # endpoint teachers: client-side rate limit

    def check(self) -> None:
        """Reject a bad limit, split, concurrency or shard before any teacher loads."""
        from tinyllm.distill.labelpool import Shard

        if self.shard is not None:
            Shard.parse(self.shard)
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of inputs, got {self.limit}")
        if self.split not in SPLITS:
            raise ConfigError(f"split must be train, validation or test, got {self.split!r}")


def label_suite(
    tasks: str | os.PathLike[str],
    names: Sequence[str] | None,
    teacher: str | Teacher,
    out_dir: str | os.PathLike[str],
    options: LabelOptions,
    *,
    progress: bool,
) -> list[LabelStats]:
    """Label each selected task's inputs of ``tasks`` (a suite file or ``"builtin"``);
    a teacher spec is built once for all tasks."""
    from tinyllm.distill.labelling import label_task
    from tinyllm.distill.labelpool import Shard
    from tinyllm.distill.teacher_specs import teacher_from_spec
    from tinyllm.suite import load_split, load_tasks, prepare_tasks

    options.check()
    suite = load_tasks(tasks)
    selected = suite.select(list(names) if names is not None else None)
    if isinstance(teacher, str):
        teacher = teacher_from_spec(
            teacher,
            suite,
            few_shot=options.few_shot,
            requests_per_second=options.requests_per_second,
        )
    prepare_tasks(selected)
    results = []
    for task in selected:
        split = load_split(suite, task, options.split, options.limit)  # type: ignore[arg-type]
        results.append(
            label_task(
                task,
                [ex.input for ex in split],
                teacher,
                out_dir,
                k=options.k,
                batch_size=options.batch_size,
                temperature=options.temperature,
                progress=progress,
                concurrency=options.concurrency,
                shard=Shard.parse(options.shard) if options.shard else None,
            )
        )
    return results


def merge_suite(
    tasks: str | os.PathLike[str],
    names: Sequence[str] | None,
    out_dir: str | os.PathLike[str],
    shards: int,
    options: LabelOptions,
) -> list[LabelStats]:
    """Merge each selected task's ``shards`` shard journals in ``out_dir``; the inputs are
    read as the labelling run read them (``options.split`` and ``options.limit``)."""
    from tinyllm.distill.labelmerge import merge_shards
    from tinyllm.suite import load_split, load_tasks, prepare_tasks

    options.check()
    if shards < 1:
        raise ConfigError(f"shards must be >= 1, got {shards}")
    suite = load_tasks(tasks)
    selected = suite.select(list(names) if names is not None else None)
    prepare_tasks(selected)
    results = []
    for task in selected:
        split = load_split(suite, task, options.split, options.limit)  # type: ignore[arg-type]
        results.append(merge_shards(task, [ex.input for ex in split], out_dir, shards))
    return results


def label_data(
    tasks: PathLike,
    teacher: str | Teacher,
    out_dir: PathLike,
    *,
    names: list[str] | None = None,
    split: str = LabelOptions.split,
    k: int = LabelOptions.k,
    limit: int | None = LabelOptions.limit,
    batch_size: int = LabelOptions.batch_size,
    temperature: float = LabelOptions.temperature,
    few_shot: int = LabelOptions.few_shot,
    concurrency: int = LabelOptions.concurrency,
    shard: str | None = LabelOptions.shard,
    requests_per_second: float | None = LabelOptions.requests_per_second,
    progress: bool = True,
) -> list[LabelStats]:
    """Label each task's inputs with a teacher; keep the best verified of k candidates.

    Writes ``TASK.jsonl`` (accepted examples), ``TASK.rejected.jsonl``, ``TASK.stats.json``
    and a journal per task under ``out_dir``; rerunning resumes where a run stopped.

    Args:
        tasks: a suite YAML file, or ``"builtin"``; inputs come from each task's ``split``.
        teacher: a Teacher, or a spec (``oracle``, ``bundle:PATH``, ``hf:PATH``,
            ``openai:MODEL@BASE_URL``, ``pipeline:builtin``, ``pipeline:MODULE:FUNCTION``).
        out_dir: folder for the labelled data.
        names: label only these tasks (default: all).
        split: which split's inputs to label (its reference outputs are not used).
        k: candidates per input.
        limit: label only the first N inputs of each task.
        batch_size: inputs per teacher call and per journal append.
        temperature: sampling temperature of the teacher.
        few_shot: worked examples before each input (local teachers).
        concurrency: teacher calls in flight at once (an endpoint teacher: one request
            per input, so pair it with a small ``batch_size``).
        shard: ``"I/N"``: label only shard I of N (by a hash of each input), into the
            shard's own journal; :func:`merge_labels` joins the N shards.
        requests_per_second: client-side rate limit of an endpoint teacher.
        progress: show progress bars.
    """
    options = LabelOptions(
        split, k, limit, batch_size, temperature, few_shot, concurrency, shard,
        requests_per_second,
    )  # fmt: skip
    return label_suite(tasks, names, teacher, out_dir, options, progress=progress)


def merge_labels(
    tasks: PathLike,
    out_dir: PathLike,
    shards: int,
    *,
    names: list[str] | None = None,
    split: str = LabelOptions.split,
    limit: int | None = LabelOptions.limit,
) -> list[LabelStats]:
    """Merge the journals of ``shards`` labelling shards in ``out_dir`` into each task's data.

    Every shard's journal must be in ``out_dir`` and every input of the split (as the
    shards read it: same ``split`` and ``limit``) labelled; writes what an unsharded
    :func:`label_data` writes.
    """
    options = LabelOptions(split=split, limit=limit)
    return merge_suite(tasks, names, out_dir, shards, options)
