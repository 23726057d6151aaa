"""Training data balanced over the wordings of a templated task (``tinyllm distill --balance``).

Generated tasks phrase one operation in a few fixed templates, some far rarer than
others: of the first 2,000 train examples of the built-in arithmetic task, "Put together
a and b." has 15 and "Solve ... for x." 286. A student that sees a few hundred training
examples meets the rare wordings once or twice and gets them wrong. :func:`balanced`
redraws a task's examples so that each wording's share follows temperature sampling over
the wordings' counts, ``p_w ∝ n_w^(1/T)`` (the curriculum's rule for tasks,
:func:`tinyllm.distill.curriculum.sampling_probs`): T = 1 keeps the shares as they are,
a larger T moves them towards uniform. The number of examples stays the same: a rare
wording repeats its examples, a common one is subsampled.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tinyllm.distill.curriculum import sampling_probs
from tinyllm.errors import ConfigError, TaskError
from tinyllm.tasks import Example

_WORD = re.compile(r"[a-z]+")


def wording(text: str) -> str:
    """An input's template words: its words of two or more letters, lower-cased, in order.

    Numbers, symbols and one-letter names (an equation's unknown) are dropped, so
    ``"Put together -0.993 and 39."`` and ``"Put together 4 and 7.1."`` share the wording
    ``"put together and"``.
    """
    return " ".join(w for w in _WORD.findall(text.lower()) if len(w) > 1)


def quotas(counts: Mapping[str, int], total: int, temperature: float) -> dict[str, int]:
    """How many of ``total`` draws each group gets: ``total`` times its temperature share,
    rounded by largest remainder (ties by group name) so the quotas sum to ``total``."""
    shares = {k: total * p for k, p in sampling_probs(counts, temperature).items()}
    out = {k: int(v) for k, v in shares.items()}
    by_remainder = sorted(shares, key=lambda k: (out[k] - shares[k], k))
    for k in by_remainder[: total - sum(out.values())]:
        out[k] += 1
    return out


@dataclass(frozen=True)
class Balance:
    """What :func:`balanced` did: the number of wordings and the smallest and largest share
    of one wording before and after."""

    wordings: int
    before: tuple[float, float]
    after: tuple[float, float]

    def line(self, task: str, temperature: float) -> str:
        """One line for the log."""
        return (
            f"{task}: training data balanced over {self.wordings} wordings at temperature "
            f"{temperature:g} (shares {100 * self.before[0]:.1f}-{100 * self.before[1]:.1f}% "
            f"-> {100 * self.after[0]:.1f}-{100 * self.after[1]:.1f}%)"
        )


def balanced(
    examples: Sequence[Example],
    temperature: float,
    seed: int = 0,
    key: Callable[[str], str] = wording,
) -> tuple[list[Example], Balance]:
    """As many examples as given, redrawn so each group's share is its temperature share.

    Args:
        examples: a task's training examples, grouped by ``key`` of their input.
        temperature: T of ``p_w ∝ n_w^(1/T)``, > 0 (1: the shares as given).
        seed: seeds each group's order and the order of the result.
        key: the group of an input (default :func:`wording`).

    Each group draws its quota by cycling through its own examples in a seeded order, so
    every example of a group is used before any repeats. Returns the shuffled examples
    and a :class:`Balance` summary.
    """
    if temperature <= 0:
        raise ConfigError(f"balance temperature must be > 0, got {temperature}")
    if not examples:
        raise TaskError("no training examples to balance (the data is empty)")
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(key(ex.input), []).append(ex)
    counts = {k: len(v) for k, v in groups.items()}
    drawn = quotas(counts, len(examples), temperature)
    rng = random.Random(seed)
    out: list[Example] = []
    for name in sorted(groups):
        group = list(groups[name])
        rng.shuffle(group)
        out += [group[i % len(group)] for i in range(drawn[name])]
    rng.shuffle(out)
    n = len(examples)
    summary = Balance(
        wordings=len(groups),
        before=(min(counts.values()) / n, max(counts.values()) / n),
        after=(min(drawn.values()) / n, max(drawn.values()) / n),
    )
    return out, summary
