"""ModelConfig and the strict dataclass loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from tinyllm.config import ModelConfig, from_dict
from tinyllm.errors import ConfigError
from tinyllm.presets import PRESETS


@dataclass
class _Inner:
    k: int


@dataclass
class _Outer:
    mode: Literal["a", "b"]
    rate: float
    inner: _Inner
    tags: list[str] = field(default_factory=list)
    maybe: int | None = None


def test_from_dict_builds_nested_and_converts_ints_to_floats() -> None:
    got = from_dict(_Outer, {"mode": "a", "rate": 1, "inner": {"k": 3}, "tags": ["x"]})
    assert got == _Outer("a", 1.0, _Inner(3), ["x"], None)
    assert isinstance(got.rate, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mode": "a", "rate": 1, "inner": {"k": 3}, "speed": 2}, "unknown key 'speed'"),
        ({"mode": "a", "rate": 1}, "missing key 'inner'"),
        ({"mode": "c", "rate": 1, "inner": {"k": 3}}, "mode: 'c' is not one of 'a', 'b'"),
        ({"mode": "a", "rate": "fast", "inner": {"k": 3}}, "rate: expected a number"),
        ({"mode": "a", "rate": 1, "inner": {"k": True}}, "inner.k: expected an integer"),
        ({"mode": "a", "rate": 1, "inner": {"k": 1, "j": 2}}, "inner: unknown key 'j'"),
        ({"mode": "a", "rate": 1, "inner": {"k": 1}, "tags": "x"}, "tags: expected a list"),
        ({"mode": "a", "rate": 1, "inner": {"k": 1}, "maybe": "1"}, "maybe: '1' does not match"),
    ],
)
def test_from_dict_names_the_bad_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(_Outer, data, "cfg")


def test_qwen25_shape_preset_has_the_real_parameter_count() -> None:
    config = PRESETS["qwen2.5-0.5b-shape"].config
    assert config is not None
    # Qwen2.5-0.5B: 494,032,768 parameters with tied embeddings (its model card: 0.49B).
    assert config.num_parameters() == 494_032_768
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (24, 896, 151936)


def test_tiny_presets_are_a_few_hundred_k_parameters() -> None:
    for name in ("tiny-llama", "tiny-qwen2"):
        config = PRESETS[name].config
        assert config is not None
        assert 100_000 < config.num_parameters() < 1_000_000


def test_round_trip_and_invalid_heads() -> None:
    config = PRESETS["tiny-qwen2"].config
    assert config is not None
    assert ModelConfig.from_dict(config.to_dict()) == config
    bad = {**config.to_dict(), "num_key_value_heads": 3}
    with pytest.raises(ConfigError, match="multiple of num_key_value_heads"):
        ModelConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="hidden_size must be positive"):
        ModelConfig.from_dict({**config.to_dict(), "hidden_size": 0})
