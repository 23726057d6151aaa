"""The curriculum's training (see :mod:`tinyllm.distill.curriculum` for its stages): stage
1's measurements on the student, then stages 2 and 3 on one shared LoRA, on our loop or on
trl's ``SFTTrainer``.

Both backends train the same thing. The mixture's batches come from :class:`Mixture`
(the sampler picks the task, the task's own seeded order picks the examples) one step at a
time, after the previous step's early-stopping check; on trl the trainer draws each
step's batch as the step starts (``draw`` of :func:`tinyllm.distill.trlbackend.train_trl`)
and the checks run in its step callback, so a task stopped at step s is never in batch
s+1 (tests/distill/test_multitask.py).

The method is the run's: SFT, or logit KD from a local teacher
(:mod:`tinyllm.distill.stagetrainers`); GRPO is refused (:func:`check_method`). On trl,
``--checkpoint-every`` adds the curriculum's own state to every checkpoint of the shared
stages and ``--resume`` continues from it (:mod:`tinyllm.distill.curriculumstate`), so a
resumed run ends as the uninterrupted one (tests/distill/test_curriculumresume.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.distill.curriculum import (
    CurriculumConfig,
    Decision,
    EarlyStopping,
    MixtureSampler,
    TaskStop,
    check_method,
    filter_tasks,
    task_similarity,
)
from tinyllm.distill.curriculumstate import (
    CurriculumState,
    load_state,
    restore_sampler,
    restore_stops,
    run_identity,
    sampler_state,
    save_state,
)
from tinyllm.distill.stagetrainers import Fit, OnSave, loss_name, stage_folder, stage_trainers
from tinyllm.errors import ConfigError, TaskError

if TYPE_CHECKING:
    from tinyllm.distill.sft import Encoded


def validation_score(model: Any, tokenizer: Any, task: Any, examples: Sequence[Any]) -> float:
    """Greedy-decode a task's validation examples and score them with its metric."""
    from tinyllm.evaluation import TorchGenerator
    from tinyllm.metrics import score
    from tinyllm.tasks import conversation
    from tinyllm.verifiers import answer_text

    generator = TorchGenerator(model, tokenizer)
    tokenizer.padding_side = "left"
    outs: list[str] = []
    for i in range(0, len(examples), 8):
        chunk = examples[i : i + 8]
        convs = [conversation(task, e.input, []) for e in chunk]
        outs += generator.generate(convs, task.output.max_new_tokens)
    answers = [answer_text(task, o) for o in outs]
    return score(task.metric, answers, [e.output for e in examples])


def embed_inputs(model: Any, tokenizer: Any, task: Any, examples: Sequence[Any]) -> np.ndarray:
    """Mean-pooled last hidden states over each input in its template: [n, d].

    The instruction and chat scaffolding are left out: they differ per task by
    construction and would drown the similarity of the inputs themselves.
    """
    import torch

    rows = []
    with torch.no_grad():
        for ex in examples:
            ids = tokenizer(task.prompt(ex.input), return_tensors="pt", add_special_tokens=False)
            hidden = model(**ids, output_hidden_states=True).hidden_states[-1]  # [1, T, d]
            rows.append(hidden[0].float().mean(dim=0).numpy())
    return np.stack(rows)


class Mixture:
    """The shared adapter's batches: the sampler picks the task, the batch is that task's
    next global batch in its own seeded order (``seed + i`` for the i-th task)."""

    def __init__(self, data: Mapping[str, Sequence[Encoded]], batch_size: int, seed: int) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.restore([])

    def restore(self, drawn: Sequence[str]) -> None:
        """Set the orders as they are after the batches of ``drawn`` (a task each) were
        drawn; ``[]``: from the start."""
        from tinyllm.distill.sft import batch_order

        self.orders = {
            n: batch_order(len(d), self.batch_size, self.seed + i)
            for i, (n, d) in enumerate(self.data.items())
        }
        for task in drawn:
            next(self.orders[task])
        self.drawn: list[str] = list(drawn)  # the task of every batch drawn, in order

    def draw(self, sampler: MixtureSampler) -> tuple[str, list[Encoded]]:
        """The next batch's task and examples."""
        task = sampler.draw()
        self.drawn.append(task)
        return task, [self.data[task][i] for i in next(self.orders[task])]


def run_curriculum(
    loaded: Any,
    suite: Any,
    selected: Sequence[Any],
    data: Mapping[str, list[Any]],
    options: Any,
    log: Any,
    progress: bool,
    config: CurriculumConfig | None = None,
    *,
    method: str = "sft",
    teacher: Any = None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """All three stages, on the own loop or trl (``options.backend``), with ``method``
    (``sft``, or ``kd`` with ``teacher``, a local model sharing the student's tokenizer;
    ``kd`` without one is sequence-level KD, which is SFT). With the trl backend's
    ``save_steps`` the shared stages checkpoint their state too, and ``resume`` continues
    from it. Returns (adapters, per-task TrainResult, decisions for the report)."""
    check_method(method)
    if teacher is not None and method != "kd":
        raise ConfigError(f"a teacher model is for method 'kd', not {method!r}")
    empty = [t.name for t in selected if not data[t.name]]
    if empty:
        raise TaskError(
            f"no training examples for {empty} (the data is empty, or the teacher's answers "
            "were all rejected); the curriculum needs some for every task"
        )
    cfg = config or CurriculumConfig()
    model, tok = loaded.model, loaded.tokenizer
    by_name = {t.name: t for t in selected}
    embeddings = {
        t.name: embed_inputs(model, tok, t, data[t.name][: cfg.embed_limit]) for t in selected
    }
    similarity = task_similarity(embeddings)
    decisions = filter_tasks({t.name: len(data[t.name]) for t in selected}, similarity, cfg)
    for d in decisions:
        log(f"curriculum stage 1: {d.task} -> {d.stage} ({d.reason})")
    fit, alone = stage_trainers(loaded, data, by_name, options, progress, teacher)
    adapters: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for d in decisions:
        if d.stage == "single-task":
            adapters[d.task], results[d.task] = alone(by_name[d.task])
    shared = [d for d in decisions if d.stage != "single-task"]
    stops: dict[str, TaskStop] = {}
    if shared:
        run = run_identity(decisions, options.train, cfg, loss_name(teacher))
        plan = SharedPlan(loaded, suite, by_name, data, shared, options, cfg, log, fit, run)
        shared_adapters, shared_results, stops = train_shared(plan)
        adapters.update(shared_adapters)
        results.update(shared_results)
    return adapters, results, [report_row(d, stops.get(d.task)) for d in decisions]


def report_row(d: Decision, stop: TaskStop | None) -> dict[str, Any]:
    """A task's line of the report's curriculum decisions."""
    row: dict[str, Any] = {
        "task": d.task,
        "stage": d.stage,
        "reason": d.reason,
        "n_train": d.n_train,
        "similarity": round(d.similarity, 4),
    }
    if stop is not None:
        row["best_step"], row["stopped_at"] = stop.best_step, stop.stopped_at
        row["reason"] += f"; best validation {stop.best:.3f} at step {stop.best_step}" + (
            f", stopped at step {stop.stopped_at}" if stop.stopped_at is not None else ""
        )
    return row


@dataclass(frozen=True)
class SharedPlan:
    """What stages 2 and 3 need: the student, the suite and its shared tasks' data, the
    options (``options.trl``: checkpoints), the thresholds, the log, the stage trainer and
    the run's identity in its checkpoints."""

    loaded: Any
    suite: Any
    by_name: Mapping[str, Any]
    data: Mapping[str, list[Any]]
    shared: Sequence[Decision]
    options: Any
    cfg: CurriculumConfig
    log: Any
    fit: Fit
    run: dict[str, Any]

    def resumed(self, stage: str) -> tuple[str, CurriculumState] | None:
        """The checkpoint of ``stage`` the trainer resumes from and the curriculum's state
        in it, or None (no ``resume``, or no checkpoint yet)."""
        trl = self.options.trl
        if trl is None or not trl.resume:
            return None
        from tinyllm.distill.trlrun import latest_checkpoint

        found = latest_checkpoint(str(Path(trl.run_dir) / stage_folder(stage)))
        if found is None:
            return None
        return found, load_state(Path(found), stage, self.run, self.options.train)

    def saver(self, state: Callable[[int], CurriculumState]) -> OnSave | None:
        """The hook that adds the curriculum's ``state`` at a step to each trl checkpoint,
        or None when the run takes no checkpoints."""
        trl = self.options.trl
        if trl is None or not trl.save_steps:
            return None
        return lambda folder, step: save_state(Path(folder), state(step), self.run)


def high_resource_stage(plan: SharedPlan, peft_model: Any, mixture: Mixture) -> list[float]:
    """Stage 2: the high-resource tasks alone on the shared LoRA (no early stopping);
    its losses, none when no task is high-resource."""
    high = [d.task for d in plan.shared if d.stage == "high-resource"]
    if not high:
        return []
    sizes = {d.task: d.n_train for d in plan.shared if d.stage == "high-resource"}
    sampler = MixtureSampler(sizes, plan.cfg.temperature, plan.options.train.seed)
    resumed = plan.resumed("stage 2")
    if resumed is not None:
        mixture.restore(resumed[1].drawn)
        restore_sampler(sampler, resumed[1].samplers["stage 2"])

    def state(step: int) -> CurriculumState:
        return CurriculumState(
            "stage 2", step, list(mixture.drawn), {"stage 2": sampler_state(sampler)}
        )

    draw = lambda: mixture.draw(sampler)  # noqa: E731
    return plan.fit(peft_model, draw, "stage 2", None, plan.saver(state))


def train_shared(plan: SharedPlan) -> tuple[dict[str, Any], dict[str, Any], dict[str, TaskStop]]:
    """Stages 2 and 3 on one shared LoRA, trained by ``plan.fit``; per-task adapters are
    its best snapshots. Returns (adapters, per-task TrainResult, per-task early-stopping
    records)."""
    from tinyllm.distill.sft import TrainResult, adapter_of, encode, with_lora

    tc, tok = plan.options.train, plan.loaded.tokenizer
    names = [d.task for d in plan.shared]
    encoded = {n: encode(tok, plan.by_name[n], plan.data[n], tc.max_len) for n in names}
    mixture = Mixture(encoded, tc.batch_size, tc.seed)
    peft_model = with_lora(plan.loaded.model, tc)
    losses = high_resource_stage(plan, peft_model, mixture)
    stopper, snapshots, losses3 = mixture_stage(plan, peft_model, mixture)
    losses += losses3
    results = {
        n: TrainResult([x for x, t in zip(losses, mixture.drawn, strict=False) if t == n])
        for n in names
    }
    adapters = {n: snapshots.get(n) or adapter_of(peft_model, tc) for n in names}
    peft_model.unload()
    return adapters, results, stopper.tasks


def mixture_stage(
    plan: SharedPlan, peft_model: Any, mixture: Mixture
) -> tuple[EarlyStopping, dict[str, Any], list[float]]:
    """Stage 3: every shared task, temperature-sampled, validated every ``interval`` steps
    with per-task early stopping and snapshots. Returns (the early-stopping records, the
    snapshots, the stage's losses)."""
    from tinyllm.distill.sft import adapter_of
    from tinyllm.suite import load_split

    tc, cfg, tok = plan.options.train, plan.cfg, plan.loaded.tokenizer
    names = [d.task for d in plan.shared]
    valid = {
        n: load_split(plan.suite, plan.by_name[n], "validation", cfg.eval_limit) for n in names
    }
    stopper = EarlyStopping(names, cfg.patience)
    sampler = MixtureSampler({d.task: d.n_train for d in plan.shared}, cfg.temperature, tc.seed + 1)
    snapshots: dict[str, Any] = {}

    def evaluate_active(step: int) -> bool:
        peft_model.eval()
        for n in stopper.active():
            value = validation_score(peft_model, tok, plan.by_name[n], valid[n])
            improved, stop = stopper.update(n, step, value)
            if improved:
                snapshots[n] = adapter_of(peft_model, tc)
            if stop:
                sampler.stop(n)
                best = stopper.tasks[n].best
                plan.log(f"curriculum stage 3: {n} stops at step {step} (best {best:.3f})")
        peft_model.train()
        return not stopper.active()

    def state(step: int) -> CurriculumState:
        samplers = {"stage 3": sampler_state(sampler)}
        return CurriculumState(
            "stage 3", step, list(mixture.drawn), samplers, stopper.tasks, snapshots
        )

    resumed = plan.resumed("stage 3")
    if resumed is None:
        evaluate_active(0)
    else:
        mixture.restore(resumed[1].drawn)
        restore_sampler(sampler, resumed[1].samplers["stage 3"])
        restore_stops(stopper, resumed[1].stops)
        snapshots.update(resumed[1].snapshots)
        if not stopper.active():  # every task had stopped: the stage ended there
            from tinyllm.distill.trlrun import checkpoint_losses

            return stopper, snapshots, checkpoint_losses(resumed[0])
    every = cfg.interval(tc.steps)
    after = lambda step: step % every == 0 and evaluate_active(step)  # noqa: E731
    losses = plan.fit(
        peft_model, lambda: mixture.draw(sampler), "stage 3", after, plan.saver(state)
    )
    if len(losses) % every:
        evaluate_active(len(losses))
    return stopper, snapshots, losses
