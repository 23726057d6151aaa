"""Curriculum decisions, temperature sampling and early stopping on constructed tasks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from tinyllm.distill.curriculum import (
    CurriculumConfig,
    EarlyStopping,
    MixtureSampler,
    filter_tasks,
    sampling_probs,
    task_similarity,
)
from tinyllm.errors import ConfigError


def clustered(center: list[float], n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(center) + 0.05 * rng.standard_normal((n, len(center)))


def test_a_task_far_from_the_others_is_dissimilar() -> None:
    embeddings = {
        "a": clustered([1.0, 0.0, 0.0, 0.0], 20, 0),
        "b": clustered([0.9, 0.1, 0.0, 0.0], 20, 1),
        "c": clustered([1.0, 0.1, 0.1, 0.0], 20, 2),
        "odd": clustered([-1.0, 0.0, 0.0, 3.0], 20, 3),
    }
    sim = task_similarity(embeddings)
    assert sim["odd"] < -0.5
    assert min(sim["a"], sim["b"], sim["c"]) > sim["odd"]
    sizes = {"a": 5000, "b": 3000, "c": 200, "odd": 8000}
    decisions = {d.task: d for d in filter_tasks(sizes, sim, CurriculumConfig(min_train=1000))}
    assert decisions["odd"].stage == "single-task"
    assert "dissimilar" in decisions["odd"].reason
    assert decisions["a"].stage == decisions["b"].stage == "high-resource"
    assert decisions["c"].stage == "low-resource"
    assert "200 train examples < 1000" in decisions["c"].reason


def test_similarity_of_identical_tasks_is_high_and_singletons_pass() -> None:
    same = clustered([1.0, 2.0, 3.0], 10, 0)
    other = clustered([3.0, -2.0, 1.0], 10, 1)
    sim = task_similarity({"x": same, "y": same + 0.0, "z": other})
    assert sim["x"] == pytest.approx(0.0, abs=1e-6)  # (1 + -1) / 2
    assert sim["z"] == pytest.approx(-1.0)
    assert task_similarity({"only": same, "z": other}) == {"only": 1.0, "z": 1.0}
    [d] = filter_tasks({"only": 10}, {"only": -1.0}, CurriculumConfig(min_train=5))
    assert d.stage == "high-resource"


def test_temperature_sampling_matches_the_formula() -> None:
    sizes = {"big": 10000, "small": 100}
    p1 = sampling_probs(sizes, 1.0)
    assert p1["big"] == pytest.approx(10000 / 10100)
    p2 = sampling_probs(sizes, 2.0)
    assert p2["big"] == pytest.approx(100 / 110)
    assert sampling_probs(sizes, 1e9)["small"] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ConfigError, match="temperature"):
        sampling_probs(sizes, 0.0)
    with pytest.raises(ConfigError, match="each with examples"):
        sampling_probs({"empty": 0}, 1.0)


def test_sampler_follows_the_probabilities_and_drops_stopped_tasks() -> None:
    sampler = MixtureSampler({"big": 900, "small": 100}, temperature=2.0, seed=0)
    counts = Counter(sampler.draw() for _ in range(4000))
    assert counts["big"] / 4000 == pytest.approx(0.75, abs=0.03)  # 30 / (30 + 10)
    sampler.stop("big")
    assert {sampler.draw() for _ in range(50)} == {"small"}
    again = MixtureSampler({"big": 900, "small": 100}, temperature=2.0, seed=0)
    first = MixtureSampler({"big": 900, "small": 100}, temperature=2.0, seed=0)
    assert [again.draw() for _ in range(20)] == [first.draw() for _ in range(20)]


def test_early_stopping_stops_a_plateaued_task_and_keeps_the_best_step() -> None:
    stopper = EarlyStopping(["small", "big"], patience=2)
    scores = {"small": [0.5, 0.6, 0.6, 0.55], "big": [0.2, 0.3, 0.4, 0.5]}
    for i in range(4):
        for task in stopper.active():
            stopper.update(task, 10 * i, scores[task][i])
    assert stopper.active() == ["big"]
    small = stopper.tasks["small"]
    assert (small.best, small.best_step, small.stopped_at) == (0.6, 10, 30)
    assert stopper.tasks["big"].best_step == 30


def test_bad_curriculum_config() -> None:
    with pytest.raises(ConfigError, match="patience"):
        CurriculumConfig(patience=0)
