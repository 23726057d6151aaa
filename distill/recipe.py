"""The ``tinyllm distill`` recipe: label with a teacher, train the student, write, evaluate.

Per task: training data comes from the teacher (``oracle`` = the suite's own train split),
the student learns one LoRA per task (or the curriculum's multi-task adapter), the
adapters and task specs go into a child bundle of the student (``lora_mode`` separate),
and the report compares teacher, student and the student's zero-shot baseline on each
task's test split, with latency per example.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tinyllm.distill.sft import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.tasks import Example, Suite, TaskSpec

if TYPE_CHECKING:
    from tinyllm.bundle import Bundle
    from tinyllm.evaluation import TaskResult

Method = Literal["sft", "kd", "grpo"]
METHODS: tuple[Method, ...] = ("sft", "kd", "grpo")
Log = Callable[[str], None]


@dataclass(frozen=True)
class TaskRow:
    """One task's line of the final report."""

    task: str
    metric: str
    teacher: float | None
    student: float
    baseline: float
    teacher_ms: float | None
    student_ms: float
    train_examples: int
    steps: int
    loss_first: float
    loss_last: float
    note: str = ""


@dataclass
class DistillReport:
    """What ``tinyllm distill`` did and how well the student does, per task."""

    out: str
    teacher: str
    student: str
    method: str
    curriculum: bool
    rows: list[TaskRow] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    tensorboard: str | None = None  # the trl backend's TensorBoard logs (RUN_DIR/TASK/...)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        from tinyllm.config import to_dict

        result: dict[str, Any] = to_dict(self)
        return result

    def format(self) -> str:
        """The table ``tinyllm distill`` prints."""
        head = (
            f"{'task':<12}{'metric':<12}{'teacher':>8}{'student':>8}{'zero-shot':>10}"
            f"{'t ms/ex':>9}{'s ms/ex':>9}{'n':>7}{'steps':>6}{'loss':>13}"
        )
        lines = [
            f"{self.out}: {self.method} from {self.teacher} into {self.student}"
            + (" (curriculum)" if self.curriculum else ""),
            head,
            "-" * len(head),
        ]
        for r in self.rows:
            teacher = f"{r.teacher:.3f}" if r.teacher is not None else "n/a"
            t_ms = f"{r.teacher_ms:.0f}" if r.teacher_ms is not None else "n/a"
            lines.append(
                f"{r.task:<12}{r.metric:<12}{teacher:>8}{r.student:>8.3f}{r.baseline:>10.3f}"
                f"{t_ms:>9}{r.student_ms:>9.0f}{r.train_examples:>7}{r.steps:>6}"
                f"{r.loss_first:>6.2f}->{r.loss_last:<5.2f}" + (f"  {r.note}" if r.note else "")
            )
        for d in self.decisions:
            lines.append(f"curriculum: {d['task']}: {d['stage']} ({d['reason']})")
        if self.tensorboard is not None:
            lines.append(f"TensorBoard logs: tensorboard --logdir {self.tensorboard}")
        lines.append(f"total {self.seconds:.0f}s")
        return "\n".join(lines)


@dataclass(frozen=True)
class TeacherScore:
    """A teacher's metric on a test split and its latency per example."""

    score: float
    ms_per_example: float | None


def teacher_data(
    suite: Suite, task: TaskSpec, teacher: str, limit: int | None, out_dir: Path, log: Log
) -> list[Example]:
    """Training examples for ``task``: the train split (oracle) or the teacher's labels.

    A real teacher labels the train inputs with rejection sampling
    (:func:`tinyllm.distill.labelling.label_task`, resumable) into ``out_dir``.
    """
    from tinyllm.distill.labelling import label_task
    from tinyllm.distill.teacher_specs import teacher_from_spec
    from tinyllm.suite import load_split
    from tinyllm.tasks import read_examples

    inputs = load_split(suite, task, "train", limit)
    if teacher == "oracle":
        return inputs
    stats = label_task(
        task, [e.input for e in inputs], teacher_from_spec(teacher, suite), out_dir, progress=False
    )
    log(f"{task.name}: teacher accepted {stats.accepted}/{stats.labelled} inputs")
    return read_examples(out_dir / f"{task.name}.jsonl", f"teacher data of {task.name!r}")


def score_teacher(suite: Suite, task: TaskSpec, teacher: str, limit: int | None) -> TeacherScore:
    """The teacher's metric on the test split (oracle: its references, latency n/a)."""
    from tinyllm.distill.teacher_specs import teacher_from_spec
    from tinyllm.distill.teachers import check_candidates
    from tinyllm.metrics import score
    from tinyllm.suite import load_split
    from tinyllm.verifiers import answer_text

    test = load_split(suite, task, "test", limit)
    refs = [e.output for e in test]
    if teacher == "oracle":
        return TeacherScore(score(task.metric, refs, refs), None)
    start = time.perf_counter()
    chosen = teacher_from_spec(teacher, suite)
    inputs = [e.input for e in test]
    outs = check_candidates(chosen.name, inputs, chosen.label(task, inputs, 1, 0.0), 1)
    ms = 1000 * (time.perf_counter() - start) / max(1, len(test))
    answers = [answer_text(task, o[0] if o else "") for o in outs]
    return TeacherScore(score(task.metric, answers, refs), ms)


def check_method(method: str, tasks: Sequence[TaskSpec]) -> None:
    """Reject an unknown method or an empty task selection."""
    if method not in METHODS:
        raise ConfigError(f"unknown distillation method {method!r}; use one of {METHODS}")
    if not tasks:
        raise ConfigError("no tasks to distill; the suite selection is empty")


# The CI-sized run (``quick``): these replace the defaults; sizes given explicitly still win.
QUICK_SIZES: dict[str, int] = {"steps": 20, "batch_size": 4, "train_limit": 200, "eval_limit": 20}


@dataclass(frozen=True)
class DistillOptions:
    """Sizes of a distillation run: training (per task; per stage for the curriculum) and data.

    The training defaults are :class:`~tinyllm.distill.sft.TrainConfig`'s; :meth:`sized`
    builds the options ``tinyllm.api.distill`` asks for.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    train_limit: int | None = 2000
    eval_limit: int | None = 100
    # Scoring generates with torch: 32 prompts a batch took half the time of 8 (SmolLM2,
    # 50 booking examples on 2 cores: 18 s against 33-40 s).
    eval_batch_size: int = 32
    backend: str = "own"  # "own": our loop (tinyllm.distill.sft.train); "trl": trl's trainers
    trl: Any = None  # TrlOptions of the trl backend (None: its defaults)
    # Temperature of sampling the training data over input wordings
    # (tinyllm.distill.balance); None: the data as the teacher gave it.
    balance: float | None = None

    def __post_init__(self) -> None:
        if self.balance is not None and self.balance <= 0:
            raise ConfigError(
                f"balance is a sampling temperature and must be > 0, got {self.balance}"
            )

    @classmethod
    def sized(
        cls,
        *,
        quick: bool = False,
        steps: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        rank: int | None = None,
        layers: int | None = None,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        seed: int = 0,
        balance: float | None = None,
    ) -> DistillOptions:
        """The defaults, then :data:`QUICK_SIZES` if ``quick``, then the sizes given (not None).

        LoRA alpha is twice the rank; ``seed`` and ``layers`` go to the training config;
        ``balance`` is kept as given.
        """
        given = {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "rank": rank,
            "train_limit": train_limit,
            "eval_limit": eval_limit,
        }
        sizes: dict[str, Any] = dict(QUICK_SIZES) if quick else {}
        sizes.update({k: v for k, v in given.items() if v is not None})
        limits = {k: sizes.pop(k) for k in ("train_limit", "eval_limit") if k in sizes}
        alpha = 2 * sizes.get("rank", TrainConfig.rank)
        train = TrainConfig(**sizes, alpha=alpha, seed=seed, layers=layers)
        return cls(train=train, balance=balance, **limits)


def trained_adapters(
    loaded: Any,
    suite: Suite,
    selected: Sequence[TaskSpec],
    data: dict[str, list[Example]],
    method: str,
    teacher: str,
    options: DistillOptions,
    log: Log,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One adapter per task with the chosen method. Returns (adapters, train results)."""
    from tinyllm.distill.sft import train_lora

    adapters: dict[str, Any] = {}
    results: dict[str, Any] = {}
    teacher_model = logit_teacher(method, teacher, loaded, log)
    for task in selected:
        if options.backend == "trl" and method == "grpo":
            from tinyllm.distill.trlgrpo import train_grpo_lora_trl
            from tinyllm.distill.trlrun import TrlOptions

            train, grpo = grpo_plan(task, options.train)
            adapter, result = train_grpo_lora_trl(
                loaded.model, loaded.tokenizer, task, data[task.name], train, grpo,
                options.trl or TrlOptions(),
            )  # fmt: skip
        elif options.backend == "trl":
            adapter, result = trl_adapter(loaded, task, data[task.name], teacher_model, options)
        elif method == "sft" or (method == "kd" and teacher_model is None):
            adapter, result = train_lora(
                loaded.model, loaded.tokenizer, task, data[task.name], options.train, progress
            )
        elif method == "kd":
            from tinyllm.distill.kd import KDConfig, train_kd_lora

            adapter, result = train_kd_lora(
                loaded.model, teacher_model, loaded.tokenizer, task, data[task.name],
                options.train, KDConfig(), progress,
            )  # fmt: skip
        else:
            from tinyllm.distill.grpo import train_grpo_lora

            train, grpo = grpo_plan(task, options.train)
            adapter, result = train_grpo_lora(
                loaded.model, loaded.tokenizer, task, data[task.name], train, grpo, progress
            )
        log(
            f"{task.name}: {len(result.losses)} steps, loss {result.first:.3f} -> {result.last:.3f}"
        )
        adapters[task.name], results[task.name] = adapter, result
    return adapters, results


def logit_teacher(method: str, teacher: str, loaded: Any, log: Log) -> Any:
    """The teacher as a local model for logit KD (``method`` kd and a teacher that shares
    the student's tokenizer), else None: sequence-level KD or SFT (it logs why)."""
    if method != "kd":
        return None
    from tinyllm.distill.kd import load_teacher_model

    return load_teacher_model(teacher, loaded.tokenizer, log)


def grpo_plan(task: TaskSpec, train: TrainConfig) -> tuple[TrainConfig, Any]:
    """GRPO's steps and settings for one task: a task with tools spends half its steps
    learning to write calls (SFT on the same LoRA), half being rewarded for them."""
    from tinyllm.distill.grpo import GRPOConfig

    if not task.tools:
        return train, GRPOConfig()
    half = max(1, train.steps // 2)
    return dataclasses.replace(train, steps=max(1, train.steps - half)), GRPOConfig(sft_steps=half)


def trl_adapter(
    loaded: Any, task: TaskSpec, examples: list[Example], teacher_model: Any, options: Any
) -> tuple[Any, Any]:
    """One task's adapter trained on trl: SFT, or logit KD when there is a teacher model."""
    from tinyllm.distill.trlbackend import train_lora_trl
    from tinyllm.distill.trlrun import TrlOptions

    kd = None
    if teacher_model is not None:
        from tinyllm.distill.kd import KDConfig

        kd = KDConfig()
    return train_lora_trl(
        loaded.model, loaded.tokenizer, task, examples, options.train,
        options.trl or TrlOptions(), teacher=teacher_model, kd=kd,
    )  # fmt: skip


def check_backend(backend: str, method: str, curriculum: bool) -> None:
    """Reject an unknown backend, or a method the curriculum does not train with."""
    if backend not in ("own", "trl"):
        raise ConfigError(f"unknown training backend {backend!r}; use 'own' or 'trl'")
    if curriculum:
        from tinyllm.distill.curriculum import check_method as check_curriculum_method

        check_curriculum_method(method)


def main_process() -> bool:
    """Whether this is rank 0 of a multi-process launch (``accelerate launch``), or alone."""
    return int(os.environ.get("RANK", "0")) == 0


def run_distill(
    tasks: str | os.PathLike[str],
    *,
    teacher: str,
    student: str | os.PathLike[str],
    out: str | os.PathLike[str],
    names: list[str] | None,
    method: str,
    curriculum: bool,
    options: DistillOptions,
    overwrite: bool,
    progress: bool,
    log: Log | None = None,
) -> DistillReport:
    """The whole recipe; see :func:`tinyllm.api.distill` for the arguments (log: stderr)."""
    from tinyllm.bundle import Bundle
    from tinyllm.distill.calltargets import check_method as check_call_method
    from tinyllm.lineage import add_tasks
    from tinyllm.models import load_model
    from tinyllm.suite import load_tasks, prepare_tasks

    log = log or (lambda line: print(line, file=sys.stderr))
    start = time.perf_counter()
    suite = load_tasks(tasks)
    selected = suite.select(names)
    check_method(method, selected)
    check_backend(options.backend, method, curriculum)
    check_call_method(method, selected, options.backend)
    prepare_tasks(selected)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    base, data = student_and_data(suite, selected, teacher, student, out, options, log)
    loaded = load_model(Bundle.open(base))
    report = DistillReport(str(out), teacher, str(student), method, curriculum)
    trl = options.trl
    if options.backend == "trl" and trl is not None and trl.tensorboard and trl.run_dir:
        report.tensorboard = trl.run_dir
    if curriculum:
        from tinyllm.distill.multitask import run_curriculum

        adapters, results, decisions = run_curriculum(
            loaded, suite, selected, data, options, log, progress, method=method,
            teacher=logit_teacher(method, teacher, loaded, log),
        )  # fmt: skip
        report.decisions = decisions
    else:
        adapters, results = trained_adapters(
            loaded, suite, selected, data, method, teacher, options, log, progress
        )
    del loaded
    if not main_process():  # under accelerate launch only rank 0 writes and evaluates
        report.seconds = time.perf_counter() - start
        return report
    add_tasks(Bundle.open(base), out, selected, adapters, overwrite=overwrite)
    log(f"wrote {out}; evaluating student and zero-shot baseline")
    report.rows = scored_rows(out, base, suite, selected, teacher, data, results, options, progress)
    report.seconds = time.perf_counter() - start
    return report


def scored_rows(
    out: Path,
    base: Path,
    suite: Suite,
    selected: list[TaskSpec],
    teacher: str,
    data: dict[str, list[Example]],
    results: dict[str, Any],
    options: DistillOptions,
    progress: bool,
) -> list[TaskRow]:
    """One report row per task: teacher, student (``out``) and zero-shot (``base``) scores,
    with the training figures from ``data`` and ``results``."""
    from tinyllm.bundle import Bundle

    student_eval = evaluated(Bundle.open(out), suite, selected, options, progress)
    baseline_eval = evaluated(Bundle.open(base), suite, selected, options, progress)
    rows = []
    for task in selected:
        t_score = score_teacher(suite, task, teacher, options.eval_limit)
        s, b, res = student_eval[task.name], baseline_eval[task.name], results[task.name]
        rows.append(
            TaskRow(
                task=task.name,
                metric=task.metric,
                teacher=t_score.score,
                student=s.score,
                baseline=b.score,
                teacher_ms=t_score.ms_per_example,
                student_ms=s.ms_per_example,
                train_examples=len(data[task.name]),
                steps=len(res.losses),
                loss_first=res.first,
                loss_last=res.last,
            )
        )
    return rows


def student_and_data(
    suite: Suite,
    selected: Sequence[TaskSpec],
    teacher: str,
    student: str | os.PathLike[str],
    out: Path,
    options: DistillOptions,
    log: Log,
) -> tuple[Path, dict[str, list[Example]]]:
    """The student's base bundle and each task's training data: rank 0 imports and labels
    first, the other ranks then read its files; tool tasks learn the teacher's calls
    (:mod:`tinyllm.distill.calltargets`); ``options.balance`` redraws each task's data
    balanced over its inputs' wordings (:mod:`tinyllm.distill.balance`)."""
    from tinyllm.distill.calltargets import with_calls

    labels_dir = out.parent / f"{out.name.removesuffix('.tllm')}-labels"
    with main_process_first():
        base = student_bundle(student, out, log)
        data = {
            t.name: teacher_data(suite, t, teacher, options.train_limit, labels_dir, log)
            for t in selected
        }
    for t in selected:
        if t.tools:
            data[t.name] = with_calls(t, data[t.name], log)
    if options.balance is not None:
        from tinyllm.distill.balance import balanced

        for t in selected:
            data[t.name], summary = balanced(data[t.name], options.balance, options.train.seed)
            log(summary.line(t.name, options.balance))
    return base, data


def main_process_first() -> Any:
    """A context in which rank 0 runs first and the other ranks after it (a no-op alone)."""
    import contextlib

    if "RANK" not in os.environ:
        return contextlib.nullcontext()
    import torch
    from accelerate import PartialState

    # cpu=True on CPU: otherwise accelerate sees no process group (and no barrier) there.
    return PartialState(cpu=not torch.cuda.is_available()).main_process_first()


def evaluated(
    bundle: Bundle, suite: Suite, tasks: list[TaskSpec], options: DistillOptions, progress: bool
) -> dict[str, TaskResult]:
    """Task name -> the bundle's score on the first ``eval_limit`` test examples (torch)."""
    from tinyllm.evaluation import evaluate_bundle

    limit, batch_size = options.eval_limit, options.eval_batch_size
    report = evaluate_bundle(
        bundle, suite, tasks, limit=limit, batch_size=batch_size, progress=progress
    )
    return {r.task: r for r in report.results}


def student_bundle(student: str | os.PathLike[str], out: Path, log: Log) -> Path:
    """The student's bundle: an existing ``.tllm`` folder, or a preset imported beside ``out``."""
    from tinyllm.models import import_bundle
    from tinyllm.presets import PRESETS

    path = Path(student)
    if path.is_dir():
        return path
    if str(student) not in PRESETS:
        raise ConfigError(
            f"student {student!r} is neither a bundle folder nor a preset ({', '.join(PRESETS)})"
        )
    base = out.parent / f"{out.name.removesuffix('.tllm')}-base.tllm"
    if not base.is_dir():
        log(f"importing preset {student} into {base}")
        import_bundle(str(student), base)
    return base
