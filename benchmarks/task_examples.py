"""The first examples of a suite's tasks: the requests the benchmarks send.

One place that builds a task's data (when a builder makes it) and takes the first N
examples of a split, for cpp_task_parity.py, labelling.py, speculative.py, tool_latency.py
and fsync_cost.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyllm.tasks import Example, Split, Suite


def first_examples(
    names: Iterable[str], count: int, split: Split = "test", suite: Suite | None = None
) -> dict[str, list[Example]]:
    """Task name -> the first ``count`` examples of its split.

    Args:
        names: task names of ``suite``.
        count: examples per task (fewer where the split is shorter).
        split: ``"train"``, ``"validation"`` or ``"test"``.
        suite: a loaded suite; default: the built-in suite.
    """
    import tinyllm
    from tinyllm.suite import load_split, prepare_tasks

    suite = suite if suite is not None else tinyllm.api.load_tasks()
    out: dict[str, list[Example]] = {}
    for name in names:
        task = suite.task(name)
        prepare_tasks([task])  # builds a builder task's data once; file tasks have theirs
        out[name] = load_split(suite, task, split, count)
    return out


def few_shot_examples(names: Iterable[str], suite: Suite | None = None) -> dict[str, list[Example]]:
    """Task name -> its few-shot examples (the first ``task.few_shot`` of its train split),
    as evaluation prompts them."""
    import tinyllm

    suite = suite if suite is not None else tinyllm.api.load_tasks()
    return {
        name: first_examples([name], suite.task(name).few_shot, "train", suite)[name]
        for name in names
    }
