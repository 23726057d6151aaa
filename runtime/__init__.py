"""tinyllm.runtime: ONNX export, the in-process engine, the task router and scheduler.

The runtime imports without torch: deployment needs only numpy, tokenizers, jinja2 and
onnxruntime. Export verification imports torch when it runs.

The names below load on first use, so importing one module of the runtime (the export
or profile options the API reads its defaults from) does not load the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinyllm.lazyexports import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["Engine", "Generation", "GenerationConfig", "SchedulerConfig", "TaskOutput"]
