"""tinyllm.runtime: ONNX export, the in-process engine (and, later, router, scheduler, server).

The runtime imports without torch: deployment needs only numpy, tokenizers, jinja2 and
onnxruntime. Export verification imports torch when it runs.
"""

from tinyllm.runtime.engine import Engine, Generation
from tinyllm.runtime.sampling import GenerationConfig

__all__ = ["Engine", "Generation", "GenerationConfig"]
