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
model); :func:`tinyllm.distill.multitask.run_curriculum` wires them to a trainer (our
loop or trl's).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tinyllm.errors import ConfigError

# The methods the shared adapter trains with: each mixture step is one supervised (or KD)
# batch of one task. GRPO samples groups of answers and rewards them per task; the
# mixture's stepping, early stopping and snapshots are not built around that.
CURRICULUM_METHODS = ("sft", "kd")


def check_method(method: str) -> None:
    """Raise ConfigError unless the curriculum trains with ``method``."""
    if method not in CURRICULUM_METHODS:
        raise ConfigError(
            f"the curriculum trains with method {' or '.join(map(repr, CURRICULUM_METHODS))}, "
            f"not {method!r}; for {method!r} train one LoRA per task (drop --curriculum)"
        )


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
