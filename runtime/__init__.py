"""tinyllm.runtime: ONNX export, the in-process engine, the task router and scheduler.

The runtime imports without torch: deployment needs only numpy, tokenizers, jinja2 and
onnxruntime. Export verification imports torch when it runs.
"""

from tinyllm.runtime.engine import Engine, Generation
from tinyllm.runtime.router import TaskOutput
from tinyllm.runtime.sampling import GenerationConfig
from tinyllm.runtime.scheduler import SchedulerConfig

__all__ = ["Engine", "Generation", "GenerationConfig", "SchedulerConfig", "TaskOutput"]
