"""Arithmetic and algebra Q/A from DeepMind's mathematics_dataset generator (fixed seeds).

mathematics_dataset 1.0.1 imports a function that newer sympy moved; it is aliased back
before import. The generator draws from Python's and numpy's global random state, so each
split seeds both before generating.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

from tinyllm.suite.splits import split_sizes
from tinyllm.tasks import Example

MODULES = (
    ("arithmetic", "add_or_sub"),
    ("arithmetic", "add_sub_multiple"),
    ("arithmetic", "mul"),
    ("arithmetic", "div"),
    ("numbers", "div_remainder"),
    ("numbers", "gcd"),
    ("algebra", "linear_1d"),
)
DEFAULT_SIZES = {"train": 10000, "validation": 300, "test": 300}
MAX_ANSWER_CHARS = 12


def _generators() -> dict[str, Any]:
    import sympy.solvers.diophantine  # noqa: F401  (load the package to patch it)
    from sympy.solvers.diophantine.diophantine import base_solution_linear

    sys.modules["sympy.solvers.diophantine"].base_solution_linear = base_solution_linear  # type: ignore[attr-defined]
    from mathematics_dataset.modules import modules

    # The generator's easiest third of its training entropy range.
    tree = modules.train(lambda r: (r[0], r[0] + (r[1] - r[0]) / 3))
    return {f"{group}__{name}": tree[group][name] for group, name in MODULES}


def _sample(gens: dict[str, Any], n: int, seed: int, seen: set[str]) -> list[Example]:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    names = sorted(gens)
    out: list[Example] = []
    while len(out) < n:
        module = names[len(out) % len(names)]
        problem = gens[module]()
        question, answer = str(problem.question), str(problem.answer)
        if question in seen or len(answer) > MAX_ANSWER_CHARS:
            continue
        seen.add(question)
        out.append(Example(question, answer, {"module": module}))
    return out


def build(sizes: dict[str, int], seed: int, downloads: Path) -> dict[str, list[Example]]:
    """Splits with no question shared between them (test drawn first)."""
    n = split_sizes(sizes, DEFAULT_SIZES)
    gens = _generators()
    seen: set[str] = set()
    test = _sample(gens, n["test"], seed * 1000 + 2, seen)
    validation = _sample(gens, n["validation"], seed * 1000 + 1, seen)
    train = _sample(gens, n["train"], seed * 1000, seen)
    return {"train": train, "validation": validation, "test": test}
