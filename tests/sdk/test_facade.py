"""The facade's options: sizes, checks and the errors a bad argument gets."""

from __future__ import annotations

import pytest

from tinyllm.compress.compression import CompressOptions
from tinyllm.errors import ConfigError
from tinyllm.facade.distill import QUICK, DistillSizes
from tinyllm.facade.evaluate import EvalOptions
from tinyllm.facade.label import LabelOptions


def test_distill_sizes_given_replace_only_what_is_given() -> None:
    assert DistillSizes().given() == DistillSizes()
    quick = QUICK.given(steps=5, lr=0.01)
    assert (quick.steps, quick.lr, quick.batch_size, quick.rank) == (5, 0.01, 4, 8)
    assert (quick.train_limit, quick.eval_limit) == (200, 20)
    full = DistillSizes().given(batch_size=2, eval_limit=3)
    assert (full.steps, full.batch_size, full.train_limit, full.eval_limit) == (200, 2, 2000, 3)


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
