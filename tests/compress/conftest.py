"""Compress fixtures: a small file-based task suite (no data builders to run) and a small
model config factory (3 blocks, GQA 4:2, vocab 64)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tinyllm.config import ModelConfig

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


def small(family: str = "llama", **dims: int) -> ModelConfig:
    qwen = family == "qwen2"
    base = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    return ModelConfig(
        family="qwen2" if qwen else "llama",
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=not qwen,
        qkv_bias=qwen,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        **{**base, **dims},
    )


@pytest.fixture()
def small_config() -> Callable[..., ModelConfig]:
    """Function: a small llama/qwen2 config, dims overridable."""
    return small
