"""Names a package exports but imports on first use (PEP 562), so importing it stays light.

``tinyllm`` and ``tinyllm.runtime`` export names whose modules are heavy (the facade,
onnxruntime through the engine); a package hands its table to :func:`lazy_exports` and
takes back its ``__getattr__`` and ``__dir__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, names: Mapping[str, str], submodules: tuple[str, ...] = ()
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for lazily imported names.

    Args:
        package: the package's ``__name__``.
        names: exported name -> the module that defines it, imported on first access;
            the value is then kept in the package, so later lookups skip ``__getattr__``.
        submodules: submodules reachable as attributes before anyone imports them
            (``tinyllm.api`` after a bare ``import tinyllm``).
    """

    def __getattr__(name: str) -> object:
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names, *submodules})

    __getattr__.__doc__ = f"Import {package}'s lazy names ({', '.join(sorted(names))}) on use."
    __dir__.__doc__ = f"The public names of {package}, imported or not."
    return __getattr__, __dir__
