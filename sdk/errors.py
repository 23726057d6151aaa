"""Errors raised by tinyllm: one hierarchy, each message says what was wrong and what to do."""

from __future__ import annotations


class TinyLLMError(Exception):
    """Base of every error tinyllm raises on purpose.

    The CLI prints these as one line (no traceback unless ``--debug``) and exits non-zero.
    """


class ConfigError(TinyLLMError):
    """A configuration (YAML/JSON/dict) has an unknown key, a missing key or a bad value."""


class BundleError(TinyLLMError):
    """A bundle on disk is missing, corrupt, of another schema version or inconsistent."""


class BundleExistsError(BundleError):
    """The output bundle already exists and overwriting was not asked for."""


class BundleLockedError(BundleError):
    """Another process is writing the same output bundle; wait for it or write elsewhere."""


class SchemaVersionError(BundleError):
    """The bundle was written with a manifest schema this tinyllm does not read."""


class CheckpointError(TinyLLMError):
    """A training checkpoint to resume from is missing, corrupt or of another run."""


class ModelSourceError(TinyLLMError):
    """A model source (HF folder, GGUF file, preset name) cannot be found or read."""


class UnknownPresetError(ModelSourceError):
    """A preset name is not one of the presets tinyllm knows."""


class UnsupportedModelError(ModelSourceError):
    """The model's architecture or one of its features is not supported."""


class MissingDependencyError(TinyLLMError):
    """An optional dependency is needed for this operation and is not installed."""


def missing_dependency(package: str, extra: str, purpose: str) -> MissingDependencyError:
    """Build the error for an optional dependency that is not installed.

    Args:
        package: the import name that failed.
        extra: the tinyllm extra that provides it.
        purpose: what the user was trying to do.
    """
    return MissingDependencyError(
        f"{purpose} needs the '{package}' package, which is not installed. "
        f"Install it with: pip install 'tinyllm[{extra}]' "
        "(install torch==2.13.0 first on CPU-only machines)."
    )


class TaskError(TinyLLMError):
    """A task is unknown, or its data is missing or malformed."""


class ServingError(TinyLLMError):
    """A serving request could not be completed (base of the serving errors below)."""


class UnknownTaskError(ServingError, TaskError):
    """A request names a task the engine does not serve."""


class QueueFullError(ServingError):
    """The engine's request queue is full; retry later or load it with a larger queue_size."""


class EngineClosedError(ServingError):
    """The engine was closed; no request is accepted any more."""


class PromptTooLongError(ServingError, ConfigError):
    """A prompt does not fit the engine's context together with its output."""


class DeadlineExceededError(ServingError):
    """A request's deadline passed before it finished."""


class RequestCancelledError(ServingError):
    """A request was cancelled before it finished."""
