"""tinyllm: distill, compress and serve LLM-powered NLP tasks as one tiny model.

Importing tinyllm never imports torch; functions that need it import it when called.
The facade (:mod:`tinyllm.api`) and the runtime load on first use of a name here, so
importing a stage (``tinyllm.runtime``, ``tinyllm.distill``...) never runs the facade.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinyllm.errors import TinyLLMError
from tinyllm.lazyexports import lazy_exports
from tinyllm.version import __version__

if TYPE_CHECKING:
    from tinyllm import api
    from tinyllm.api import (
        evaluate,
        export,
        import_model,
        inspect,
        load_torch_model,
        open_bundle,
    )
    from tinyllm.bundle import Bundle
    from tinyllm.inspection import Inspection
    from tinyllm.runtime import Engine

# name -> the module that defines it, imported on first access.
_LAZY = {
    "Bundle": "tinyllm.bundle",
    "Engine": "tinyllm.runtime",
    "Inspection": "tinyllm.inspection",
    "evaluate": "tinyllm.api",
    "export": "tinyllm.api",
    "import_model": "tinyllm.api",
    "inspect": "tinyllm.api",
    "load_torch_model": "tinyllm.api",
    "open_bundle": "tinyllm.api",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, submodules=("api",))

__all__ = [
    "Bundle",
    "Engine",
    "Inspection",
    "TinyLLMError",
    "__version__",
    "api",
    "evaluate",
    "export",
    "import_model",
    "inspect",
    "load_torch_model",
    "open_bundle",
]
