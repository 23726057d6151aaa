"""A small file-based task suite for compression tests (no data builders to run)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

WORDS = [
    "good",
    "bad",
    "fine",
    "great",
    "awful",
    "room",
    "staff",
    "food",
    "city",
    "train",
    "hotel",
    "price",
    "slow",
    "quick",
]
SUITE = """tasks:
  - name: {name}
    description: a toy task for compression tests
    instruction: Answer the request in one word.
    template: "Input: {{input}}"
    output: {{kind: text, max_new_tokens: 4}}
    metric: exact_match
    data: {{train: {name}-train.jsonl, validation: {name}-test.jsonl, test: {name}-test.jsonl}}
"""


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """suite.yaml with tasks alpha, beta, gamma (12 train examples each) and empty (none)."""
    root = tmp_path_factory.mktemp("suite")
    specs = []
    for seed, name in enumerate(["alpha", "beta", "gamma", "empty"]):
        rng = random.Random(seed)
        n = 0 if name == "empty" else 12
        rows = [
            {
                "input": " ".join(rng.choices(WORDS, k=rng.randint(3, 12))),
                "output": rng.choice(WORDS),
            }
            for _ in range(n)
        ]
        for split in ("train", "test"):
            text = "".join(json.dumps(r) + "\n" for r in rows)
            (root / f"{name}-{split}.jsonl").write_text(text)
        specs.append(SUITE.format(name=name).split("\n", 1)[1])
    (root / "suite.yaml").write_text("tasks:\n" + "".join(specs))
    return root / "suite.yaml"
