"""Verifiers: accept or reject one model output for a task, with the reason.

The same verifiers serve evaluation (the invalid-output rate) and rejection sampling
during distillation (keep only outputs that pass).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tinyllm.tasks import TaskSpec

NUMBER = re.compile(r"^-?\d+(\.\d+)?(/-?\d+)?$")


@dataclass(frozen=True)
class Verdict:
    """A verifier's decision; ``reason`` says why an output was rejected."""

    ok: bool
    reason: str = ""


def parse_json_output(text: str) -> Any:
    """Parse a JSON answer, tolerating a Markdown code fence around it; raise ValueError."""
    stripped = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", stripped, re.S)
    return json.loads(fence.group(1) if fence else stripped)


def _label_in_set(task: TaskSpec, output: str) -> Verdict:
    if output.strip() in task.output.labels:
        return Verdict(True)
    return Verdict(False, f"{output.strip()[:40]!r} is not one of the task's labels")


def _json_schema(task: TaskSpec, output: str) -> Verdict:
    import jsonschema

    try:
        value = parse_json_output(output)
    except ValueError as e:
        return Verdict(False, f"not valid JSON ({e.__class__.__name__})")
    errors = list(jsonschema.Draft202012Validator(task.output.schema or {}).iter_errors(value))
    if errors:
        return Verdict(False, f"JSON does not match the schema: {errors[0].message}")
    return Verdict(True)


def _number(task: TaskSpec, output: str) -> Verdict:
    if NUMBER.match(output.strip()):
        return Verdict(True)
    return Verdict(False, f"{output.strip()[:40]!r} is not a number")


def _iso_datetime(task: TaskSpec, output: str) -> Verdict:
    try:
        datetime.strptime(output.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        return Verdict(False, f"{output.strip()[:40]!r} is not YYYY-MM-DDTHH:MM")
    return Verdict(True)


def _non_empty(task: TaskSpec, output: str) -> Verdict:
    return Verdict(True) if output.strip() else Verdict(False, "empty output")


CHECKS = {
    "label_in_set": _label_in_set,
    "json_schema": _json_schema,
    "number": _number,
    "iso_datetime": _iso_datetime,
    "non_empty": _non_empty,
}


def verify(task: TaskSpec, output: str) -> Verdict:
    """Run every verifier of the task; the first rejection wins."""
    for name in task.verifiers:
        verdict = CHECKS[name](task, output)
        if not verdict.ok:
            return Verdict(False, f"{name}: {verdict.reason}")
    return Verdict(True)


def answer_text(task: TaskSpec, raw: str) -> str:
    """The answer in a raw model output, before verification and scoring.

    JSON tasks keep the whole text; label and text tasks keep the first non-empty line.
    For label tasks, a line equal to a label up to case and a trailing period, or one that
    names exactly one of the labels as a word ("The text is negative"), gives that label.
    """
    text = raw.strip()
    if task.output.kind == "json" or not text:
        return text
    first = text.splitlines()[0].strip()
    if task.output.kind == "label":
        candidate = first.rstrip(".!").strip()
        for label in task.output.labels:
            if candidate.casefold() == label.casefold():
                return label
        words = set(re.findall(r"[\w-]+", first.casefold()))
        named = [label for label in task.output.labels if label.casefold() in words]
        return named[0] if len(named) == 1 else candidate
    return first
