"""An ONNX Runtime InferenceSession for an exported decoder, on a named device.

The one place that maps ``device`` ("cpu", "cuda") to an execution provider, sizes the
session's threads and turns on ONNX Runtime's profiler; a provider this install lacks is
an error that says what to install. :class:`tinyllm.runtime.session.DecoderSession` runs
steps on the session made here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tinyllm.errors import ConfigError, TinyLLMError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_device(device: str) -> None:
    """Raise :class:`ConfigError` unless ``device`` is one this runtime knows."""
    if device not in PROVIDERS:
        raise ConfigError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")


def make_session(
    model: Path,
    device: str,
    threads: int | None,
    *,
    edited: bytes | None = None,
    profile_prefix: str | None = None,
) -> Any:
    """An InferenceSession on ``device`` ("cpu" or "cuda"); a missing provider is an error.

    ``edited``: the model's bytes, changed (e.g. nodes named for a profile), loaded in
    place of the file; its external data still comes from the file's folder.
    ``profile_prefix``: turn on ONNX Runtime's profiler, writing JSON with this prefix.
    """
    import onnxruntime as ort

    check_device(device)
    if PROVIDERS[device] not in ort.get_available_providers():
        raise TinyLLMError(
            f"device={device!r} needs ONNX Runtime's {PROVIDERS[device]}, which this install "
            f"lacks (available: {', '.join(ort.get_available_providers())}); on a CUDA "
            "machine run `pip install 'tinyllm[gpu]'` (docs/gpu.md), then `tinyllm doctor` "
            "to see what this machine can run; or use device='cpu'"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or usable_cpus()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if edited is not None:
        folder = str(model.parent)
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", folder
        )
    providers = [PROVIDERS[device]] + (["CPUExecutionProvider"] if device != "cpu" else [])
    source = str(model) if edited is None else edited
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types
        raise TinyLLMError(f"{model}: ONNX Runtime cannot load this engine ({e})") from e
