"""The test suite's own guards: a per-test timeout, and the gpu marker's condition."""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import pytest


def test_every_test_runs_under_a_timeout(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout")  # pytest-timeout, dev extra
    assert 0 < float(pytestconfig.getini("timeout")) <= 900


def test_gpu_tests_skip_exactly_without_the_onnxruntime_cuda_provider(
    request: pytest.FixtureRequest,
) -> None:
    here = Path(__file__).with_name("conftest.py")
    root = next(
        plugin
        for plugin in request.config.pluginmanager.get_plugins()
        if getattr(plugin, "__file__", None) and Path(plugin.__file__) == here
    )

    @pytest.mark.gpu
    def probe() -> None: ...

    item = pytest.Function.from_parent(request.node.parent, name="probe", callobj=probe)
    root.pytest_collection_modifyitems(request.config, [item])
    skips = [m for m in item.iter_markers("skip")]
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    assert bool(skips) != has_cuda
    assert all("CUDAExecutionProvider" in m.kwargs["reason"] for m in skips)
