"""tinyllm.runtime: ONNX export, the in-process engine, the task router and scheduler.

The runtime imports without torch: deployment needs only numpy, tokenizers, jinja2 and
onnxruntime. Export verification imports torch when it runs.

The names below load on first use, so importing one module of the runtime (the export
or profile options the API reads its defaults from) does not load the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinyllm.runtime.engine import Engine, Generation
    from tinyllm.runtime.router import TaskOutput
    from tinyllm.runtime.sampling import GenerationConfig
    from tinyllm.runtime.scheduler import SchedulerConfig

# name -> the module that defines it, imported on first access.
_LAZY = {
    "Engine": "tinyllm.runtime.engine",
    "Generation": "tinyllm.runtime.engine",
    "GenerationConfig": "tinyllm.runtime.sampling",
    "SchedulerConfig": "tinyllm.runtime.scheduler",
    "TaskOutput": "tinyllm.runtime.router",
}


def __getattr__(name: str) -> object:
    """Load the engine's names (and so onnxruntime) only when first used."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'tinyllm.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names, loaded or not."""
    return sorted([*globals(), *_LAZY])


__all__ = ["Engine", "Generation", "GenerationConfig", "SchedulerConfig", "TaskOutput"]
