"""Verified data generation: k candidates per input, verifiers judge, the best passing one stays.

Rejection fine-tuning data for one task, written to ``out_dir``:

- ``TASK.journal.jsonl``: one record per finished input (accepted or rejected), appended
  and fsynced after every batch. It is the source of truth: a crash loses at most the
  batch in flight, and a rerun skips every input already in it (nothing is relabelled).
- ``TASK.jsonl``: accepted examples (:class:`tinyllm.tasks.Example` JSONL; ``meta`` holds
  the provenance: teacher, k, temperature, votes, candidates that passed).
- ``TASK.rejected.jsonl``: inputs with no passing candidate, with candidates and reasons.
- ``TASK.stats.json``: counts, acceptance rate and a histogram of rejection reasons.

The best candidate is a passing one (verifiers of the task spec); among those the most
frequent (self-consistency, JSON compared by value); ties go to the earliest candidate.

At scale (:mod:`tinyllm.distill.labelpool`): ``concurrency`` chunks at the teacher at once,
journaled by one writer as they finish (a crash loses at most the chunks in flight); a
``shard`` labels only its share of the inputs into its own journal, and
:mod:`tinyllm.distill.labelmerge` merges the shards.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinyllm.config import to_dict
from tinyllm.distill.labelpool import Shard, label_concurrently
from tinyllm.distill.teachers import Teacher, check_candidates, check_k
from tinyllm.durability import WriterLock, write_text_atomic
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, TaskSpec, write_examples
from tinyllm.verifiers import answer_text, parse_json_output, verify


@dataclass(frozen=True)
class LabelStats:
    """What labelling one task gave: counts, acceptance rate, why candidates were rejected."""

    task: str
    teacher: str
    k: int
    temperature: float
    inputs: int
    labelled: int
    accepted: int
    resumed: int
    candidates: int
    passing_candidates: int
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        """Accepted inputs over labelled inputs (0 when nothing was labelled)."""
        return self.accepted / self.labelled if self.labelled else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (with the acceptance rate)."""
        data: dict[str, Any] = to_dict(self)
        data["acceptance_rate"] = self.acceptance_rate
        return data


@dataclass(frozen=True)
class Choice:
    """The outcome for one input: the chosen answer (None if none passed) and why not."""

    answer: str | None
    votes: int
    passing: int
    reasons: list[str]


def _vote_key(task: TaskSpec, answer: str) -> str:
    if task.output.kind == "json":
        try:
            return json.dumps(parse_json_output(answer), sort_keys=True)
        except ValueError:
            return answer
    return answer.strip()


def choose(task: TaskSpec, candidates: Sequence[str]) -> Choice:
    """Pick the best candidate: passing the task's verifiers, then most frequent, then earliest.

    Rejection reasons keep the verifier name and drop the candidate-specific detail
    (``"json_schema: JSON does not match the schema"``).
    """
    if not candidates:
        return Choice(None, 0, 0, ["teacher: no candidate"])
    answers = [answer_text(task, c) for c in candidates]
    verdicts = [verify(task, a) for a in answers]
    passing = [a for a, v in zip(answers, verdicts, strict=True) if v.ok]
    reasons = [_reason(v.reason) for v in verdicts if not v.ok]
    if not passing:
        return Choice(None, 0, 0, reasons)
    keys = [_vote_key(task, a) for a in passing]
    best_key, votes = Counter(keys).most_common(1)[0]  # stable: ties keep the earliest
    return Choice(passing[keys.index(best_key)], votes, len(passing), reasons)


def _reason(reason: str) -> str:
    name, _, detail = reason.partition(": ")
    if name == "json_schema" and detail.startswith("JSON does not match"):
        return "json_schema: JSON does not match the schema"
    if "is not" in detail:  # "'xyz' is not one of the task's labels" -> "is not one of ..."
        return f"{name}: output {detail[detail.index('is not') :]}"
    return reason


def journal_path(out_dir: Path, task: str, shard: Shard | None = None) -> Path:
    """The journal of a task (or of one shard of it) in ``out_dir``."""
    part = f".{shard.stem}" if shard is not None else ""
    return out_dir / f"{task}{part}.journal.jsonl"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The finished records of a journal.

    A record is one line and is finished only with its newline: an unterminated last
    line is the torn tail of an append killed mid-write, and is dropped. Any other bad
    line is an error.
    """
    if not path.is_file():
        return []
    records = []
    finished, _, _torn = path.read_bytes().rpartition(b"\n")
    for lineno, raw in enumerate(finished.split(b"\n") if finished else [], 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start}); the journal "
                "was not written by tinyllm: delete it or choose another output folder"
            ) from e
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{lineno}: corrupt journal line ({e}); delete it") from e
        if not isinstance(record, dict) or not isinstance(record.get("input"), str):
            raise ConfigError(
                f"{path}:{lineno}: a journal line must be an object with an 'input'; delete "
                "the journal or choose another output folder"
            )
        records.append(record)
    return records


def _append(path: Path, records: list[dict[str, Any]]) -> None:
    """Append whole lines and fsync, so a finished batch survives a crash."""
    with path.open("a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _repair_tail(path: Path) -> None:
    """Cut a torn last line left by a crash, so appending after it gives valid lines."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def label_task(
    task: TaskSpec,
    inputs: Sequence[str],
    teacher: Teacher,
    out_dir: str | os.PathLike[str],
    *,
    k: int = 4,
    batch_size: int = 16,
    temperature: float = 0.7,
    progress: bool = True,
    concurrency: int = 1,
    shard: Shard | None = None,
) -> LabelStats:
    """Label one task's inputs with rejection sampling; resumable; writes four files.

    Args:
        task: the task (its verifiers judge the candidates).
        inputs: raw inputs to label; duplicates are labelled once.
        teacher: gives up to ``k`` candidates per input.
        out_dir: folder for ``TASK.jsonl``, ``TASK.rejected.jsonl``, ``TASK.stats.json``
            and the journal ``TASK.journal.jsonl``.
        k: candidates per input.
        batch_size: inputs per teacher call (and per journal append).
        temperature: sampling temperature passed to the teacher.
        progress: show a tqdm bar.
        concurrency: teacher calls in flight at once (threads; see
            :mod:`tinyllm.distill.labelpool`). An endpoint teacher answers one request per
            input, so ``batch_size`` 1-4 with ``concurrency`` 8-32 keeps a server busy.
        shard: label only this shard's inputs, into its own journal
            (``TASK.shard-I-of-N.journal.jsonl``) and stats; no examples are written until
            :func:`tinyllm.distill.labelmerge.merge_shards` merges every shard.
    """
    check_k(k, temperature)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    journal = journal_path(out, task.name, shard)
    with WriterLock(journal):  # one labeller per journal: two would label inputs twice
        journal.touch()  # a shard with no inputs still shows the merge that it ran
        _repair_tail(journal)
        if shard is None:
            for stale in out.glob(f".{task.name}.*.tmp"):  # outputs of a killed run
                stale.unlink(missing_ok=True)
        records = read_journal(journal)
        check_same_run(records, journal, teacher.name, k, temperature)
        done = {r["input"] for r in records}
        mine = list(dict.fromkeys(inputs if shard is None else shard.select(inputs)))
        todo = [text for text in mine if text not in done]
        start = time.perf_counter()
        _label_todo(task, todo, teacher, journal, records, k, batch_size, temperature,
                    concurrency, progress, shard)  # fmt: skip
        wanted = set(mine)
        kept = [r for r in records if r["input"] in wanted]
        resumed, seconds = len(done & wanted), time.perf_counter() - start
        if shard is not None:
            stats = stats_of(task, kept, teacher.name, k, temperature, resumed, seconds)
            write_text_atomic(
                out / f"{task.name}.{shard.stem}.stats.json",
                json.dumps(stats.to_dict(), indent=2) + "\n",
            )
            return stats
        return write_outputs(task, out, kept, teacher.name, k, temperature, resumed, seconds)


def _label_todo(
    task: TaskSpec,
    todo: list[str],
    teacher: Teacher,
    journal: Path,
    records: list[dict[str, Any]],
    k: int,
    batch_size: int,
    temperature: float,
    concurrency: int,
    progress: bool,
    shard: Shard | None,
) -> None:
    """Label ``todo`` in chunks of ``batch_size``, ``concurrency`` at once; journal each."""
    from tqdm import tqdm

    def work(batch: list[str]) -> list[dict[str, Any]]:
        answers = teacher.label(task, batch, k=k, temperature=temperature)
        candidates = check_candidates(teacher.name, batch, answers, k)
        return [
            _record(task, text, c, teacher.name, k, temperature)
            for text, c in zip(batch, candidates, strict=True)
        ]

    desc = f"label {task.name}" + (f" [shard {shard}]" if shard is not None else "")
    with tqdm(total=len(todo), desc=desc, unit="input", disable=not progress) as bar:

        def journaled(batch: list[str], new: list[dict[str, Any]]) -> None:
            _append(journal, new)
            records.extend(new)
            bar.update(len(batch))

        chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        label_concurrently(chunks, work, journaled, concurrency)


def check_same_run(
    records: list[dict[str, Any]], journal: Path, teacher: str, k: int, temperature: float
) -> None:
    for r in records[:1]:
        if (r["teacher"], r["k"], r["temperature"]) != (teacher, k, temperature):
            raise ConfigError(
                f"{journal} holds labels from teacher {r['teacher']!r} (k={r['k']}, "
                f"temperature={r['temperature']}); this run uses {teacher!r} (k={k}, "
                f"temperature={temperature}). Use another output folder or delete the journal."
            )


def _record(
    task: TaskSpec, text: str, candidates: list[str], teacher: str, k: int, temperature: float
) -> dict[str, Any]:
    choice = choose(task, candidates)
    return {
        "input": text,
        "output": choice.answer,
        "candidates": list(candidates),
        "votes": choice.votes,
        "passing": choice.passing,
        "reasons": choice.reasons,
        "teacher": teacher,
        "k": k,
        "temperature": temperature,
    }


def stats_of(
    task: TaskSpec,
    records: list[dict[str, Any]],
    teacher: str,
    k: int,
    temperature: float,
    resumed: int,
    seconds: float,
) -> LabelStats:
    """The counts of a task's (or a shard's) journal records."""
    reasons = Counter(reason for r in records for reason in r["reasons"])
    return LabelStats(
        task=task.name,
        teacher=teacher,
        k=k,
        temperature=temperature,
        inputs=len(records),
        labelled=len(records),
        accepted=sum(r["output"] is not None for r in records),
        resumed=resumed,
        candidates=sum(len(r["candidates"]) for r in records),
        passing_candidates=sum(r["passing"] for r in records),
        reasons=dict(reasons.most_common()),
        seconds=seconds,
    )


def write_outputs(
    task: TaskSpec,
    out: Path,
    records: list[dict[str, Any]],
    teacher: str,
    k: int,
    temperature: float,
    resumed: int,
    seconds: float,
) -> LabelStats:
    """Write ``TASK.jsonl``, ``TASK.rejected.jsonl`` and ``TASK.stats.json`` from records."""
    accepted = [
        Example(
            r["input"],
            r["output"],
            {
                "teacher": teacher,
                "k": k,
                "temperature": temperature,
                "votes": r["votes"],
                "passing": r["passing"],
            },
        )
        for r in records
        if r["output"] is not None
    ]
    write_examples(out / f"{task.name}.jsonl", accepted)
    rejected = [
        {"input": r["input"], "candidates": r["candidates"], "reasons": r["reasons"]}
        for r in records
        if r["output"] is None
    ]
    text = "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in rejected)
    write_text_atomic(out / f"{task.name}.rejected.jsonl", text)
    stats = stats_of(task, records, teacher, k, temperature, resumed, seconds)
    write_text_atomic(out / f"{task.name}.stats.json", json.dumps(stats.to_dict(), indent=2) + "\n")
    return stats


def format_stats(stats: Sequence[LabelStats]) -> str:
    """The per-task summary table ``tinyllm data label`` prints."""
    head = f"{'task':<12}{'labelled':>9}{'accepted':>9}{'rate':>7}{'resumed':>9}"
    head += "  top rejection reasons"
    lines = [head, "-" * len(head)]
    for s in stats:
        top = "; ".join(f"{reason} ({n})" for reason, n in list(s.reasons.items())[:2]) or "-"
        lines.append(
            f"{s.task:<12}{s.labelled:>9}{s.accepted:>9}{100 * s.acceptance_rate:>6.1f}%"
            f"{s.resumed:>9}  {top}"
        )
    return "\n".join(lines)
