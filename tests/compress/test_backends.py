"""The quantization backends: one protocol, one registry, one quant-string parser."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tinyllm.compress import backends
from tinyllm.compress.backends import (
    BACKENDS,
    BackendOutput,
    QuantBackend,
    QuantJob,
    backend,
    parse_quant,
    register,
)
from tinyllm.compress.gptq import rtn_quantize
from tinyllm.compress.hessian import Calibration
from tinyllm.compress.mlgptq import QuantSettings, linear_weights, quantize_weights
from tinyllm.config import ModelConfig
from tinyllm.errors import ConfigError


def test_every_method_is_a_registered_backend_satisfying_the_protocol() -> None:
    assert list(BACKENDS) == ["rtn", "gptq", "mlgptq", "nncf"]
    for name, method in BACKENDS.items():
        assert isinstance(method, QuantBackend), name
        assert method.name == name
        assert backend(name) is method
    needs = {name: method.needs_hessians for name, method in BACKENDS.items()}
    assert needs == {"rtn": False, "gptq": True, "mlgptq": True, "nncf": True}


def test_an_unknown_backend_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown quantization backend 'awq'; known backends: "
        r"rtn, gptq, mlgptq, nncf$",
    ):
        backend("awq")


def test_the_registry_takes_only_backends_and_each_name_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(backends, "BACKENDS", dict(BACKENDS))

    @dataclass(frozen=True)
    class Halve:
        name: str = "halve"
        needs_hessians: bool = False

        def quantize(self, job: QuantJob) -> BackendOutput:
            return BackendOutput({}, job.weights)

    register(Halve())
    assert backends.backend("halve").name == "halve"
    assert parse_quant("int4-halve") == (4, "halve")  # a new backend is a new quant string
    with pytest.raises(ConfigError, match="'halve' is registered already"):
        register(Halve())
    with pytest.raises(ConfigError, match="is not a quantization backend"):
        register(SimpleNamespace(name="x"))  # type: ignore[arg-type]


def test_parse_quant_accepts_bits_and_a_backend_and_names_the_choices() -> None:
    assert parse_quant("int4-mlgptq") == (4, "mlgptq")
    assert parse_quant("int8-rtn") == (8, "rtn")
    assert parse_quant("int4-nncf-awq") == (4, "nncf-awq")
    for bad in ("int4-foo", "int3-gptq", "int4", "gptq", "int4-rtn-awq"):
        with pytest.raises(ConfigError, match=f"unknown quantization '{bad}'; use int4|int8"):
            parse_quant(bad)


def rtn_job(config: ModelConfig, weights: dict[str, Any]) -> QuantJob:
    settings = QuantSettings(method="rtn", bits=4, group_size=16)
    return QuantJob(
        loaded=None,
        source=SimpleNamespace(config=config),  # type: ignore[arg-type]
        suite=None,  # type: ignore[arg-type]
        settings=settings,
        calibration=Calibration(tasks=[]),
        task_hessians={},
        weights=weights,
        fold=None,
        progress=False,
    )


def test_the_rtn_backend_rounds_every_linear_to_nearest(small_config: Any) -> None:
    config = small_config()
    gen = torch.Generator().manual_seed(0)
    shapes = config.weight_shapes()
    weights = {
        name: torch.randn(shapes[name], generator=gen) for _, _, name in linear_weights(config)
    }
    output = backend("rtn").quantize(rtn_job(config, weights))
    assert sorted(output.results) == sorted(weights)
    for name, w in weights.items():
        alone = rtn_quantize(w, 4, 16, False)
        assert torch.equal(output.results[name].dequantized, alone.dequantized), name
    assert output.weights is weights and output.rescaled == {} and output.error_results is None


def test_quantize_weights_refuses_a_method_it_does_not_sweep(small_config: Any) -> None:
    config = small_config()
    settings = QuantSettings(method="nncf")
    with pytest.raises(ConfigError, match="not 'nncf': quantize through"):
        quantize_weights({}, config, settings, {})
