"""Bad requests are rejected where they enter; a request that fails in a step fails alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tinyllm.errors import ConfigError, TinyLLMError
from tinyllm.runtime import Engine, GenerationConfig, serving


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_bad_temperature_is_rejected(served: Path, value: float) -> None:
    with pytest.raises(ConfigError, match="temperature must be a finite number >= 0"):
        GenerationConfig(temperature=value)
    engine = Engine.load(served, max_batch=2)
    with pytest.raises(ConfigError, match="temperature must be a finite number"):
        engine.submit("rewrite", "hello", temperature=value)
    assert engine.stats()["submitted"] == 0
    engine.close()


@pytest.mark.parametrize("value", [0.0, -0.5, 1.5, math.nan])
def test_top_p_outside_0_1_is_rejected(value: float) -> None:
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\]"):
        GenerationConfig(top_p=value)


def test_a_lone_surrogate_is_a_clear_error(served: Path) -> None:
    engine = Engine.load(served, max_batch=2)
    with pytest.raises(ConfigError, match="lone surrogate"):
        engine.run("sentiment", "fine \ud800 day")
    with pytest.raises(ConfigError, match="lone surrogate"):
        engine.complete("x\udfff")
    engine.close()


def test_a_request_failing_in_a_step_fails_alone(
    served: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine.load(served, max_batch=4)
    long = GenerationConfig(max_new_tokens=12, ignore_eos=True)
    expected = engine.complete("hello there", long).token_ids
    real = serving.sample

    def broken(logits: np.ndarray, config: GenerationConfig, rng: np.random.Generator) -> int:
        if config.seed == 666:
            raise RuntimeError("a sampler bug")
        return real(logits, config, rng)

    monkeypatch.setattr(serving, "sample", broken)
    bad = engine.submit_complete("hello there", GenerationConfig(max_new_tokens=12, seed=666))
    good = [engine.submit_complete("hello there", long) for _ in range(3)]
    with pytest.raises(TinyLLMError, match="failed while decoding: a sampler bug"):
        bad.result()
    assert [f.result().token_ids for f in good] == [expected] * 3  # batched with it, unharmed
    stats = engine.stats()
    assert stats["failed"] == 1 and stats["completed"] == 4
    engine.close()


def test_stream_with_stop_strings_yields_generate_text(exported: Path) -> None:
    engine = Engine.load(exported)
    plain = engine.generate("The room was spotless", GenerationConfig(max_new_tokens=16))[0].text
    assert len(plain) > 6
    for stop in (plain[3:5], plain[-2:], "\n\n", "zzzz-never"):
        config = GenerationConfig(max_new_tokens=16, stop=(stop,))
        text = engine.generate("The room was spotless", config)[0].text
        assert "".join(engine.stream("The room was spotless", config)) == text
        assert stop not in text
    engine.close()
