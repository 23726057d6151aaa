"""Compress fixtures: a small model config factory (3 blocks, GQA 4:2, vocab 64)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tinyllm.config import ModelConfig


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
