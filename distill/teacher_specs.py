"""Teacher specs: the strings that name a teacher (``oracle``, ``bundle:PATH``, ...).

A module of its own, above every teacher implementation: teachers.py, endpoint.py and
pipeline.py each define teachers and none of them imports this dispatcher back.
"""

from __future__ import annotations

import importlib

from tinyllm.distill.teachers import LocalTeacher, OracleTeacher, Teacher
from tinyllm.errors import ConfigError
from tinyllm.tasks import Suite


def teacher_from_spec(
    spec: str,
    suite: Suite | None = None,
    *,
    few_shot: int = 0,
    requests_per_second: float | None = None,
) -> Teacher:
    """Build a teacher from a CLI string.

    Specs: ``oracle`` (reference outputs, needs ``suite``), ``bundle:PATH``, ``hf:PATH``,
    ``openai:MODEL@BASE_URL`` (key from ``$OPENAI_API_KEY``), ``tinyllm:BASE_URL`` (a
    ``tinyllm serve`` endpoint: the task is the model), ``pipeline:builtin`` (the
    shipped SmolLM2 + tools pipeline; its LLM at ``out/smollm2.tllm``, or
    ``pipeline:builtin:BUNDLE``) and ``pipeline:MODULE:FUNCTION`` (a function returning
    a teacher). ``requests_per_second`` rate-limits the endpoint teachers (``openai:``,
    ``tinyllm:``) on the client side; the others ignore it.
    """
    kind, _, rest = spec.partition(":")
    if kind == "oracle" and not rest:
        if suite is None:
            raise ConfigError("the oracle teacher needs the suite whose reference outputs it uses")
        return OracleTeacher(suite)
    if kind in ("bundle", "hf") and rest:
        build = LocalTeacher.from_bundle if kind == "bundle" else LocalTeacher.from_hf
        return build(rest, suite=suite, few_shot=few_shot)
    if kind == "openai" and "@" in rest:
        from tinyllm.distill.endpoint import OpenAITeacher

        model, _, base_url = rest.partition("@")
        return OpenAITeacher(base_url, model, requests_per_second=requests_per_second)
    if kind == "tinyllm" and rest.startswith(("http://", "https://")):
        from tinyllm.distill.endpoint import OpenAITeacher

        return OpenAITeacher(rest, "", task_as_model=True, requests_per_second=requests_per_second)
    if kind == "pipeline" and rest:
        return _pipeline_teacher(rest, suite)
    raise ConfigError(
        f"unknown teacher {spec!r}; use oracle, bundle:PATH, hf:PATH, openai:MODEL@BASE_URL, "
        "tinyllm:BASE_URL, "
        "pipeline:builtin or pipeline:MODULE:FUNCTION"
    )


def _pipeline_teacher(target: str, suite: Suite | None) -> Teacher:
    if target == "builtin" or target.startswith("builtin:"):
        from tinyllm.distill.pipeline import builtin_pipeline

        return builtin_pipeline(target.partition(":")[2] or None, suite)
    module_name, _, function = target.rpartition(":")
    if not module_name:
        raise ConfigError(f"pipeline teacher {target!r}: write pipeline:MODULE:FUNCTION")
    try:
        factory = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"pipeline teacher {target!r}: cannot import it ({e})") from e
    teacher = factory()
    if not isinstance(teacher, Teacher):
        raise ConfigError(
            f"pipeline teacher {target!r} returned {type(teacher).__name__}, "
            "not a Teacher (needs .name and .label)"
        )
    return teacher
