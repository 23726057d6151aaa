"""The facade's options: sizes, checks and the errors a bad argument gets."""

from __future__ import annotations

import pytest

from tinyllm.compress.compression import CompressOptions
from tinyllm.distill.recipe import DistillOptions
from tinyllm.distill.sft import TrainConfig
from tinyllm.errors import ConfigError
from tinyllm.facade.evaluate import EvalOptions
from tinyllm.facade.label import LabelOptions


def test_distill_options_replace_only_the_sizes_given() -> None:
    assert DistillOptions.sized() == DistillOptions()
    assert DistillOptions().train == TrainConfig()
    quick = DistillOptions.sized(quick=True, steps=5, lr=0.01)
    assert (quick.train.steps, quick.train.lr, quick.train.batch_size, quick.train.rank) == (
        5,
        0.01,
        4,
        8,
    )
    assert (quick.train_limit, quick.eval_limit) == (200, 20)
    full = DistillOptions.sized(batch_size=2, eval_limit=3)
    assert (full.train.steps, full.train.batch_size, full.train_limit, full.eval_limit) == (
        200,
        2,
        2000,
        3,
    )


def test_distill_options_carry_seed_layers_and_alpha_twice_the_rank() -> None:
    options = DistillOptions.sized(rank=4, layers=2, seed=7)
    assert (options.train.rank, options.train.alpha) == (4, 8)
    assert (options.train.layers, options.train.seed) == (2, 7)
    with pytest.raises(ConfigError, match="steps and batch_size must be >= 1"):
        DistillOptions.sized(steps=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (EvalOptions(backend="gpu"), "backend must be 'torch' or 'engine', got 'gpu'"),
        (EvalOptions(limit=0), "limit must be a positive number of examples"),
        (EvalOptions(batch_size=0), "batch_size must be >= 1"),
        (LabelOptions(split="dev"), "split must be train, validation or test, got 'dev'"),
        (LabelOptions(limit=0), "limit must be a positive number of inputs"),
        (CompressOptions(prune_ratio=0.5, add_task="x"), "do not combine"),
    ],
)
def test_bad_options_are_clear_errors(
    options: EvalOptions | LabelOptions | CompressOptions, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        options.check()


def test_good_options_pass_their_checks() -> None:
    for options in (EvalOptions(), EvalOptions(backend="engine", limit=1), LabelOptions()):
        options.check()
    CompressOptions(prune_ratio=0.5).check()
