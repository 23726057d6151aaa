"""Where tinyllm keeps what it builds locally: tokenizers, suite data, file digests."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where tinyllm caches locally built artifacts (``$TINYLLM_CACHE`` overrides)."""
    return Path(os.environ.get("TINYLLM_CACHE", Path.home() / ".cache" / "tinyllm"))
