"""Importing the API loads only what its signatures need: no stage runs, no engine loads.

Each public function of :mod:`tinyllm.api` imports its stage when called; the defaults
it shows come from leaf options modules (``runtime/exportoptions.py``,
``compress/pruneoptions.py``, ...). Measured in a fresh interpreter, since this test
process has loaded everything already.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# Heavy at import: the serving loop (and so onnxruntime's wrapper modules), the engine,
# the stages' runs, torch and transformers.
HEAVY = [
    "tinyllm.runtime.serving",
    "tinyllm.runtime.engine",
    "tinyllm.runtime.session",
    "tinyllm.compress.recipe",
    "tinyllm.compress.prune",
    "tinyllm.distill",
    "tinyllm.inspection",
    "onnxruntime",
    "onnx",
    "torch",
    "transformers",
]


def loaded_after(statement: str, preamble: str = "", heavy: list[str] = HEAVY) -> list[str]:
    """The modules of ``heavy`` in sys.modules after running ``statement`` in a fresh python."""
    script = (
        "import sys\n"
        f"{preamble}\n"
        f"{statement}\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize(
    "statement",
    [
        "import tinyllm.api",
        "import tinyllm; tinyllm.api.distill",  # the lazy attribute of the package
        "import tinyllm.cli",  # the CLI builds its options from the API's signatures
    ],
)
def test_importing_the_api_loads_no_stage_engine_or_torch(statement: str) -> None:
    assert loaded_after(statement) == []


def test_importing_the_api_loads_no_numpy() -> None:
    # Bundles load numpy when opened, not when the API's signatures or the CLI's options
    # are read: every `tinyllm` command starts without numpy's ~90 ms.
    assert loaded_after("import tinyllm.api", heavy=["numpy"]) == []
    assert loaded_after("import tinyllm.cli", heavy=["numpy"]) == []
    assert loaded_after("import tinyllm.api", "import tinyllm.adapters", ["numpy"]) == ["numpy"]


def test_the_probe_sees_a_heavy_module() -> None:
    # The check above can fail: the same probe reports what a heavy import loaded.
    loaded = loaded_after("import tinyllm.api", preamble="import tinyllm.runtime.serving")
    assert "tinyllm.runtime.serving" in loaded


def test_the_runtime_names_load_on_first_use() -> None:
    import tinyllm.runtime
    from tinyllm.runtime.engine import Engine
    from tinyllm.runtime.sampling import GenerationConfig

    assert tinyllm.runtime.Engine is Engine
    assert tinyllm.runtime.GenerationConfig is GenerationConfig
    assert set(tinyllm.runtime.__all__) <= set(dir(tinyllm.runtime))
    with pytest.raises(AttributeError, match="no attribute 'Engin'"):
        _ = tinyllm.runtime.Engin  # type: ignore[attr-defined]
