"""A constructed tool task for the distillation tests: sums the calculator computes,
with its result as the answer or in context, its traced call targets, and a suite file."""

from __future__ import annotations

import json
from pathlib import Path

from tinyllm.distill.calltargets import with_calls
from tinyllm.tasks import DataSpec, Example, OutputSpec, TaskSpec, ToolUse

PAIRS = [(2, 3), (10, 7), (4, 9), (6, 1), (12, 30), (8, 8), (5, 40), (3, 14)]

SUITE_YAML = """
tasks:
  - name: sums
    description: add two numbers
    instruction: Call the calculator.
    output: {kind: text, max_new_tokens: 8}
    verifiers: [number]
    metric: exact_match
    data: {train: data.jsonl, validation: data.jsonl, test: data.jsonl}
    tools: {names: [calculator], result: RESULT, max_call_tokens: 48}
"""


def sums_task(result: str = "context") -> TaskSpec:
    """Sums by the calculator; ``result`` is the task's ``tools.result``."""
    return TaskSpec(
        name="sums",
        description="add two numbers",
        instruction="Call the calculator.",
        output=OutputSpec("text", max_new_tokens=8),
        metric="exact_match",
        data=DataSpec(builder="x"),
        verifiers=["number"],
        tools=ToolUse(["calculator"], result, max_call_tokens=48),  # type: ignore[arg-type]
    )


def sums_examples(n: int = len(PAIRS)) -> list[Example]:
    """Plain examples (input, the sum as the teacher's answer)."""
    return [Example(f"What is {a} plus {b}?", str(a + b)) for a, b in PAIRS[:n]]


def sums_targets(result: str = "context", n: int = len(PAIRS)) -> list[Example]:
    """The examples traced to call targets, as ``tinyllm distill`` trains on them."""
    return with_calls(sums_task(result), sums_examples(n))


def sums_suite_at(folder: Path, result: str = "answer", n: int = 4) -> Path:
    """The sums task as a suite file in ``folder`` (every split: the first ``n`` examples)."""
    rows = [{"input": e.input, "output": e.output} for e in sums_examples(n)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "suite.yaml"
    path.write_text(SUITE_YAML.replace("RESULT", result))
    return path
