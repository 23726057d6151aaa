"""The three-stage multi-task curriculum: filter, high-resource first, then the mixture.

1. Filtering, on measured quantities: a task with fewer than ``min_train`` training
   examples is *low-resource* (it skips stage 2 and joins in stage 3, where temperature
   sampling up-weights it and early stopping ends it early); a task whose inputs are far
   from the others' (mean cosine of its centred mean-pooled student embedding centroid
   to the other tasks' centroids below ``min_similarity``) is *dissimilar* and gets its own
   single-task LoRA instead of sharing one.
2. One shared LoRA trains on the high-resource tasks (temperature sampling among them).
3. The same LoRA trains on the whole shared mixture with ``p_t ∝ n_t^(1/T)``; every
   ``eval_every`` steps each active task is scored on its validation split and a task
   that has not improved for ``patience`` evaluations stops being sampled. Each task
   keeps the shared adapter as it was at that task's best validation score.

The decisions, sampling and stopping are plain Python on plain data (tested without a
model); :func:`run_curriculum` wires them to the trainer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyllm.errors import ConfigError


@dataclass(frozen=True)
class CurriculumConfig:
    """Thresholds and schedule of the curriculum."""

    min_train: int = 1000
    min_similarity: float = -0.6
    temperature: float = 2.0
    patience: int = 2
    # Validation interval of stage 3; None: every max(10, steps // 6) steps, so a long run
    # is scored about six times per task instead of spending most of its time validating.
    eval_every: int | None = None
    eval_limit: int = 40
    embed_limit: int = 32

    def interval(self, steps: int) -> int:
        """Steps between stage-3 validations for a stage of ``steps`` steps."""
        return self.eval_every if self.eval_every is not None else max(10, steps // 6)

    def __post_init__(self) -> None:
        if self.min_train < 0 or self.temperature <= 0 or self.patience < 1:
            raise ConfigError("min_train must be >= 0, temperature > 0 and patience >= 1")
        if (self.eval_every is not None and self.eval_every < 1) or self.eval_limit < 1:
            raise ConfigError("eval_every and eval_limit must be >= 1")
        if self.embed_limit < 2:
            raise ConfigError(f"embed_limit must be >= 2, got {self.embed_limit}")


@dataclass(frozen=True)
class Decision:
    """Where stage 1 put a task, with the measured numbers behind it."""

    task: str
    stage: str  # "high-resource" (stages 2+3), "low-resource" (stage 3), "single-task"
    n_train: int
    similarity: float
    reason: str


def task_similarity(embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean cosine of each task's centroid to every other task's centroid, centred.

    Centroids are centred on their mean first: raw LM hidden states share one large
    direction that makes every pair look alike. After centring, tasks spread evenly get
    about ``-1/(n-1)`` each and a task opposite to all others about -1; with fewer than
    three tasks there is nothing to compare against, and every task gets 1.0.

    Args:
        embeddings: task -> [n_t, d] mean-pooled input embeddings (n_t >= 1).
    """
    if len(embeddings) < 3:
        return {name: 1.0 for name in embeddings}
    names = list(embeddings)
    centroids = np.stack([embeddings[n].mean(axis=0) for n in names])  # [K, d]
    centroids = centroids - centroids.mean(axis=0)
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)  # [K, 1]
    unit = centroids / np.maximum(norms, 1e-12)
    cos = unit @ unit.T  # [K, K]
    k = len(names)
    return {n: float((cos[i].sum() - cos[i, i]) / (k - 1)) for i, n in enumerate(names)}


def filter_tasks(
    sizes: Mapping[str, int], similarity: Mapping[str, float], config: CurriculumConfig
) -> list[Decision]:
    """Stage 1: classify each task as high-resource, low-resource or single-task."""
    decisions = []
    for name, n in sizes.items():
        sim = similarity.get(name, 1.0)
        if len(sizes) > 1 and sim < config.min_similarity:
            stage = "single-task"
            reason = (
                f"dissimilar: similarity {sim:.2f} < {config.min_similarity:.2f}; "
                "trained alone, not in the shared adapter"
            )
        elif n < config.min_train:
            stage = "low-resource"
            reason = f"{n} train examples < {config.min_train}: joins only the stage-3 mixture"
        else:
            stage = "high-resource"
            reason = f"{n} train examples >= {config.min_train}, similarity {sim:.2f}"
        decisions.append(Decision(name, stage, n, sim, reason))
    return decisions


def sampling_probs(sizes: Mapping[str, int], temperature: float) -> dict[str, float]:
    """Temperature sampling ``p_t ∝ n_t^(1/T)`` (T=1: proportional, T→∞: uniform)."""
    if temperature <= 0:
        raise ConfigError(f"sampling temperature must be > 0, got {temperature}")
    if not sizes or any(n < 1 for n in sizes.values()):
        raise ConfigError("temperature sampling needs at least one task, each with examples")
    weights = {k: float(n) ** (1.0 / temperature) for k, n in sizes.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}


class MixtureSampler:
    """Draws the task of each batch from the active tasks with temperature sampling."""

    def __init__(self, sizes: Mapping[str, int], temperature: float, seed: int) -> None:
        self.sizes = dict(sizes)
        self.temperature = temperature
        self.active = set(sizes)
        self.rng = random.Random(seed)

    def probs(self) -> dict[str, float]:
        """Current probabilities over the active tasks."""
        return sampling_probs({k: self.sizes[k] for k in sorted(self.active)}, self.temperature)

    def draw(self) -> str:
        """The next task."""
        p = self.probs()
        return self.rng.choices(list(p), weights=list(p.values()))[0]

    def stop(self, task: str) -> None:
        """Stop sampling ``task``."""
        self.active.discard(task)


@dataclass
class TaskStop:
    """One task's early-stopping record."""

    best: float = float("-inf")
    best_step: int = 0
    bad_evals: int = 0
    stopped_at: int | None = None
    history: list[tuple[int, float]] = field(default_factory=list)


class EarlyStopping:
    """Per-task early stopping on a validation metric (higher is better)."""

    def __init__(self, tasks: Sequence[str], patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.tasks = {t: TaskStop() for t in tasks}

    def update(self, task: str, step: int, metric: float) -> tuple[bool, bool]:
        """Record a validation score. Returns (improved, stop_now)."""
        s = self.tasks[task]
        s.history.append((step, metric))
        if metric > s.best + self.min_delta:
            s.best, s.best_step, s.bad_evals = metric, step, 0
            return True, False
        s.bad_evals += 1
        if s.bad_evals >= self.patience:
            s.stopped_at = step
            return False, True
        return False, False

    def active(self) -> list[str]:
        """Tasks not stopped yet."""
        return [t for t, s in self.tasks.items() if s.stopped_at is None]


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
    """All three stages. Returns (adapters, per-task TrainResult, decisions for the report)."""
    from tinyllm.distill.sft import train_lora

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
    adapters: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for d in decisions:
        if d.stage == "single-task":
            task = by_name[d.task]
            adapters[d.task], results[d.task] = train_lora(
                model, tok, task, data[d.task], tc, progress
            )
    shared = [d for d in decisions if d.stage != "single-task"]
    stops: dict[str, TaskStop] = {}
    if shared:
        shared_adapters, shared_results, stops = train_shared(
            loaded, suite, by_name, data, shared, options, cfg, log, progress
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


def train_shared(
    loaded: Any,
    suite: Any,
    by_name: Mapping[str, Any],
    data: Mapping[str, list[Any]],
    shared: Sequence[Decision],
    options: Any,
    cfg: CurriculumConfig,
    log: Any,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, TaskStop]]:
    """Stages 2 and 3 on one shared LoRA; per-task adapters are its best snapshots."""
    from tinyllm.distill.sft import TrainResult, adapter_of, batches, encode, train, with_lora
    from tinyllm.suite import load_split

    tc = options.train
    model, tok = loaded.model, loaded.tokenizer
    names = [d.task for d in shared]
    sizes = {d.task: d.n_train for d in shared}
    streams = {
        n: batches(encode(tok, by_name[n], data[n], tc.max_len), tc.batch_size, tc.seed + i, n)
        for i, n in enumerate(names)
    }
    drawn: list[str] = []

    def mixture(sampler: MixtureSampler) -> Any:
        while True:
            task = sampler.draw()
            drawn.append(task)
            yield next(streams[task])

    peft_model = with_lora(model, tc)
    high = [d.task for d in shared if d.stage == "high-resource"]
    losses: list[float] = []
    if high:
        sampler2 = MixtureSampler({n: sizes[n] for n in high}, cfg.temperature, tc.seed)
        losses += train(
            peft_model, mixture(sampler2), tc, progress="stage 2" if progress else None
        ).losses
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
    result3 = train(
        peft_model,
        mixture(sampler3),
        tc,
        on_step=lambda step, _: step % every == 0 and evaluate_active(step),
        progress="stage 3" if progress else None,
    )
    if len(result3.losses) % every:
        evaluate_active(len(result3.losses))
    losses += result3.losses
    results = {
        n: TrainResult([x for x, t in zip(losses, drawn, strict=False) if t == n]) for n in names
    }
    adapters = {n: snapshots.get(n) or adapter_of(peft_model, tc) for n in names}
    peft_model.unload()
    return adapters, results, stopper.tasks
