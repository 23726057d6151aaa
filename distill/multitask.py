"""The curriculum's training (see :mod:`tinyllm.distill.curriculum` for its stages): stage
1's measurements on the student, then stages 2 and 3 on one shared LoRA, on our loop or on
trl's ``SFTTrainer``.

Both backends train the same thing. The mixture's batches come from :class:`Mixture`
(the sampler picks the task, the task's own seeded order picks the examples) one step at a
time, after the previous step's early-stopping check; on trl the trainer draws each
step's batch as the step starts (``draw`` of :func:`tinyllm.distill.trlbackend.train_trl`)
and the checks run in its step callback, so a task stopped at step s is never in batch
s+1 (tests/distill/test_multitask.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tinyllm.distill.curriculum import (
    CurriculumConfig,
    Decision,
    EarlyStopping,
    MixtureSampler,
    TaskStop,
    filter_tasks,
    task_similarity,
)

if TYPE_CHECKING:
    from tinyllm.distill.sft import Encoded, TrainConfig


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


Draw = Callable[[], tuple[str, list["Encoded"]]]
# (shared LoRA model, draw, stage label, after_step) -> the stage's losses; after_step gets
# the 1-based step and returns True to end the stage.
Fit = Callable[[Any, Draw, str, Callable[[int], bool] | None], list[float]]


class Mixture:
    """The shared adapter's batches: the sampler picks the task, the batch is that task's
    next global batch in its own seeded order (``seed + i`` for the i-th task)."""

    def __init__(self, data: Mapping[str, Sequence[Encoded]], batch_size: int, seed: int) -> None:
        from tinyllm.distill.sft import batch_order

        self.data = data
        self.orders = {
            n: batch_order(len(d), batch_size, seed + i) for i, (n, d) in enumerate(data.items())
        }
        self.drawn: list[str] = []  # the task of every batch drawn, in order

    def draw(self, sampler: MixtureSampler) -> tuple[str, list[Encoded]]:
        """The next batch's task and examples."""
        task = sampler.draw()
        self.drawn.append(task)
        return task, [self.data[task][i] for i in next(self.orders[task])]


def own_fit(config: TrainConfig, progress: bool) -> Fit:
    """Stages on our loop (:func:`tinyllm.distill.sft.train`)."""
    from tinyllm.distill.sft import collate, train

    def fit(model: Any, draw: Draw, stage: str, after: Callable[[int], bool] | None) -> list[float]:
        def stream() -> Iterator[Any]:
            while True:
                task, items = draw()
                yield collate(items, 0, task)

        hook = None if after is None else (lambda step, _loss: after(step))
        label = stage if progress else None
        return train(model, stream(), config, on_step=hook, progress=label).losses

    return fit


def trl_fit(tokenizer: Any, config: TrainConfig, options: Any) -> Fit:
    """Stages on trl's ``SFTTrainer`` (:func:`tinyllm.distill.trlbackend.train_trl`): each
    step's batch is drawn as the step starts, and early stopping runs in its callback."""
    from tinyllm.distill.trlbackend import train_trl

    def fit(model: Any, draw: Draw, stage: str, after: Callable[[int], bool] | None) -> list[float]:
        hook = None if after is None else (lambda step, _loss: after(step))
        name = "curriculum-" + stage.replace(" ", "")
        result = train_trl(
            model, tokenizer, [], config, options, name, on_step=hook, draw=lambda: draw()[1]
        )
        return result.losses

    return fit


def stage_trainers(
    loaded: Any, data: Mapping[str, list[Any]], options: Any, progress: bool
) -> tuple[Fit, Callable[[Any], tuple[Any, Any]]]:
    """The trainers of ``options.backend``: the shared stages', and a single-task LoRA's
    (task -> (adapter, TrainResult))."""
    model, tok, tc = loaded.model, loaded.tokenizer, options.train
    if options.backend != "trl":
        from tinyllm.distill.sft import train_lora

        def own_alone(task: Any) -> tuple[Any, Any]:
            return train_lora(model, tok, task, data[task.name], tc, progress)

        return own_fit(tc, progress), own_alone
    from tinyllm.distill.trlbackend import TrlOptions, train_lora_trl

    trl = options.trl or TrlOptions()

    def trl_alone(task: Any) -> tuple[Any, Any]:
        return train_lora_trl(model, tok, task, data[task.name], tc, trl)

    return trl_fit(tok, tc, trl), trl_alone


def run_curriculum(
    loaded: Any,
    suite: Any,
    selected: Sequence[Any],
    data: Mapping[str, list[Any]],
    options: Any,
    log: Any,
    progress: bool,
    config: CurriculumConfig | None = None,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """All three stages, on the own loop or trl (``options.backend``). Returns (adapters,
    per-task TrainResult, decisions for the report)."""
    cfg = config or CurriculumConfig()
    tc = options.train
    model, tok = loaded.model, loaded.tokenizer
    by_name = {t.name: t for t in selected}
    embeddings = {
        t.name: embed_inputs(model, tok, t, data[t.name][: cfg.embed_limit]) for t in selected
    }
    similarity = task_similarity(embeddings)
    decisions = filter_tasks({t.name: len(data[t.name]) for t in selected}, similarity, cfg)
    for d in decisions:
        log(f"curriculum stage 1: {d.task} -> {d.stage} ({d.reason})")
    fit, alone = stage_trainers(loaded, data, options, progress)
    adapters: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for d in decisions:
        if d.stage == "single-task":
            adapters[d.task], results[d.task] = alone(by_name[d.task])
    shared = [d for d in decisions if d.stage != "single-task"]
    stops: dict[str, TaskStop] = {}
    if shared:
        shared_adapters, shared_results, stops = train_shared(
            loaded, suite, by_name, data, shared, tc, cfg, log, fit
        )
        adapters.update(shared_adapters)
        results.update(shared_results)
    report = []
    for d in decisions:
        row: dict[str, Any] = {
            "task": d.task,
            "stage": d.stage,
            "reason": d.reason,
            "n_train": d.n_train,
            "similarity": round(d.similarity, 4),
        }
        if d.task in stops:
            s = stops[d.task]
            row["best_step"], row["stopped_at"] = s.best_step, s.stopped_at
            row["reason"] += f"; best validation {s.best:.3f} at step {s.best_step}" + (
                f", stopped at step {s.stopped_at}" if s.stopped_at is not None else ""
            )
        report.append(row)
    return adapters, results, report


def high_resource_stage(
    peft_model: Any,
    mixture: Mixture,
    shared: Sequence[Decision],
    sizes: Mapping[str, int],
    cfg: CurriculumConfig,
    seed: int,
    fit: Fit,
) -> list[float]:
    """Stage 2: the high-resource tasks alone on the shared LoRA (no early stopping);
    its losses, none when no task is high-resource."""
    high = [d.task for d in shared if d.stage == "high-resource"]
    if not high:
        return []
    sampler = MixtureSampler({n: sizes[n] for n in high}, cfg.temperature, seed)
    return fit(peft_model, lambda: mixture.draw(sampler), "stage 2", None)


def train_shared(
    loaded: Any,
    suite: Any,
    by_name: Mapping[str, Any],
    data: Mapping[str, list[Any]],
    shared: Sequence[Decision],
    tc: TrainConfig,
    cfg: CurriculumConfig,
    log: Any,
    fit: Fit,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, TaskStop]]:
    """Stages 2 and 3 on one shared LoRA, trained by ``fit``; per-task adapters are its best
    snapshots. Returns (adapters, per-task TrainResult, per-task early-stopping records)."""
    from tinyllm.distill.sft import TrainResult, adapter_of, encode, with_lora
    from tinyllm.suite import load_split

    model, tok = loaded.model, loaded.tokenizer
    names = [d.task for d in shared]
    sizes = {d.task: d.n_train for d in shared}
    mixture = Mixture(
        {n: encode(tok, by_name[n], data[n], tc.max_len) for n in names}, tc.batch_size, tc.seed
    )
    peft_model = with_lora(model, tc)
    losses = high_resource_stage(peft_model, mixture, shared, sizes, cfg, tc.seed, fit)
    valid = {n: load_split(suite, by_name[n], "validation", cfg.eval_limit) for n in names}
    stopper = EarlyStopping(names, cfg.patience)
    sampler3 = MixtureSampler(sizes, cfg.temperature, tc.seed + 1)
    snapshots: dict[str, Any] = {}

    def evaluate_active(step: int) -> bool:
        peft_model.eval()
        for n in stopper.active():
            value = validation_score(peft_model, tok, by_name[n], valid[n])
            improved, stop = stopper.update(n, step, value)
            if improved:
                snapshots[n] = adapter_of(peft_model, tc)
            if stop:
                sampler3.stop(n)
                best = stopper.tasks[n].best
                log(f"curriculum stage 3: {n} stops at step {step} (best {best:.3f})")
        peft_model.train()
        return not stopper.active()

    every = cfg.interval(tc.steps)
    evaluate_active(0)
    losses3 = fit(
        peft_model,
        lambda: mixture.draw(sampler3),
        "stage 3",
        lambda step: step % every == 0 and evaluate_active(step),
    )
    if len(losses3) % every:
        evaluate_active(len(losses3))
    losses += losses3
    results = {
        n: TrainResult([x for x, t in zip(losses, mixture.drawn, strict=False) if t == n])
        for n in names
    }
    adapters = {n: snapshots.get(n) or adapter_of(peft_model, tc) for n in names}
    peft_model.unload()
    return adapters, results, stopper.tasks
