"""NNCF weight compression as a second quantization backend (not built yet).

The plan: run ``nncf.compress_weights`` (int8/int4, AWQ, scale estimation) on the torch
model and convert its packed tensors into our MatMulNBits packing. Until that exists this
module only reports clearly that the backend is unavailable.
"""

from __future__ import annotations

from tinyllm.errors import ConfigError


def require_nncf() -> None:
    """Raise a clear error: the NNCF backend is not implemented in this version."""
    raise ConfigError(
        "the NNCF quantization backend (int4-nncf/int8-nncf) is not implemented yet; use "
        "int4-mlgptq, int4-gptq or int4-rtn"
    )
