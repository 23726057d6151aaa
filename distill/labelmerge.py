"""Merging the journals of a task's shards into one labelled data set.

Each shard ``i/N`` of a task was labelled into ``TASK.shard-I-of-N.journal.jsonl``, in one
folder or on N machines whose journals were copied into one folder. The merge checks that
every shard's journal is there, that all were labelled by the same teacher, k and
temperature, that no input was labelled by two shards and that every input is labelled;
then it writes the task's journal (so an unsharded rerun resumes from it) and the usual
``TASK.jsonl``, ``TASK.rejected.jsonl`` and ``TASK.stats.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinyllm.distill.labelling import (
    LabelStats,
    check_same_run,
    journal_path,
    read_journal,
    write_outputs,
)
from tinyllm.distill.labelpool import Shard, shard_of
from tinyllm.durability import WriterLock, write_text_atomic
from tinyllm.errors import ConfigError
from tinyllm.tasks import TaskSpec


def merge_shards(
    task: TaskSpec, inputs: Sequence[str], out_dir: str | os.PathLike[str], shards: int
) -> LabelStats:
    """Merge the ``shards`` journals of ``task`` in ``out_dir``; every input must be labelled.

    Args:
        task: the task the shards labelled.
        inputs: the inputs the shards were given (the same list for every shard).
        out_dir: the folder holding every ``TASK.shard-I-of-N.journal.jsonl``.
        shards: N, the number of shards.
    """
    out = Path(out_dir)
    parts = [Shard(i, shards) for i in range(shards)]
    missing = [str(s) for s in parts if not journal_path(out, task.name, s).is_file()]
    if missing:
        raise ConfigError(
            f"{task.name}: no journal in {out} for shard(s) {', '.join(missing)}; label them "
            f"(tinyllm data label ... --shard I/{shards}) or copy their journals here"
        )
    records: list[dict[str, Any]] = []
    owner: dict[str, Shard] = {}
    for shard in parts:
        path = journal_path(out, task.name, shard)
        for record in read_journal(path):
            text = record["input"]
            if not shard.owns(text):
                raise ConfigError(
                    f"{path}: input {text[:60]!r} belongs to shard {shard_of(text, shards)}/"
                    f"{shards}, not {shard}: were the shards labelled with another count?"
                )
            if text in owner:
                raise ConfigError(f"{path}: input {text[:60]!r} is in the journal twice")
            owner[text] = shard
            records.append(record)
    if not records:
        raise ConfigError(f"{task.name}: the {shards} shard journals in {out} are empty")
    first = records[0]
    teacher, k, temperature = first["teacher"], first["k"], first["temperature"]
    for shard in parts:
        shard_records = [r for r in records if owner[r["input"]] == shard]
        check_same_run(shard_records, journal_path(out, task.name, shard), teacher, k, temperature)
    wanted = list(dict.fromkeys(inputs))
    unlabelled = [text for text in wanted if text not in owner]
    if unlabelled:
        counts = {str(s): 0 for s in parts}
        for text in unlabelled:
            counts[str(Shard(shard_of(text, shards), shards))] += 1
        todo = ", ".join(f"shard {s}: {n}" for s, n in counts.items() if n)
        raise ConfigError(
            f"{task.name}: {len(unlabelled)} of {len(wanted)} inputs are not labelled yet "
            f"({todo}); rerun those shards, they resume where they stopped"
        )
    order = {text: i for i, text in enumerate(wanted)}
    kept = sorted((r for r in records if r["input"] in order), key=lambda r: order[r["input"]])
    journal = journal_path(out, task.name)
    with WriterLock(journal):
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in kept)
        write_text_atomic(journal, text)
        return write_outputs(task, out, kept, teacher, k, temperature, len(kept), 0.0)
