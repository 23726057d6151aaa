"""tinyllm: distill, compress and serve LLM-powered NLP tasks as one tiny model.

Importing tinyllm never imports torch; functions that need it import it when called.
"""

from tinyllm.api import evaluate, export, import_model, inspect, load_torch_model, open_bundle
from tinyllm.bundle import Bundle
from tinyllm.errors import TinyLLMError
from tinyllm.inspection import Inspection
from tinyllm.version import __version__


def __getattr__(name: str) -> object:
    """``tinyllm.Engine`` imports the runtime (onnxruntime) only when first used."""
    if name == "Engine":
        from tinyllm.runtime import Engine

        return Engine
    raise AttributeError(f"module 'tinyllm' has no attribute {name!r}")


__all__ = [
    "Bundle",
    "Engine",
    "Inspection",
    "TinyLLMError",
    "__version__",
    "evaluate",
    "export",
    "import_model",
    "inspect",
    "load_torch_model",
    "open_bundle",
]
