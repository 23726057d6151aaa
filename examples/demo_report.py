"""The tables examples/demo.py prints: scores, hand-written requests, bundle sizes, time."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import tinyllm

MIB = 2**20
METRIC_NAMES = {"macro_f1": "macro-F1", "slot_f1": "slot F1", "exact_match": "exact match"}


@dataclass(frozen=True)
class ScoreRow:
    """One task's scores on the same test examples: base zero-shot, student, served int4."""

    task: str
    metric: str
    base: float
    student: float
    student_int4: float

    @classmethod
    def of(cls, distill_row: dict[str, Any], int4_scores: dict[str, float]) -> ScoreRow:
        """From a row of the distill report and the served engine's scores."""
        task = distill_row["task"]
        return cls(
            task, distill_row["metric"], distill_row["baseline"], distill_row["student"],
            int4_scores[task],
        )  # fmt: skip


@dataclass(frozen=True)
class ExampleRow:
    """One hand-written request, its right answer, and the base's and student's answers."""

    task: str
    text: str
    expected: Any
    base_answer: Any
    base_raw: str
    base_right: bool
    base_ms: float
    student_answer: Any
    student_raw: str
    student_right: bool
    student_ms: float

    @classmethod
    def of(cls, task: str, text: str, expected: Any, base: Any, student: Any) -> ExampleRow:
        """From the two served results (``tinyllm.runtime.TaskOutput``)."""
        return cls(
            task, text, expected,
            base.value, base.text, base.valid and base.value == expected, 1000 * base.latency_s,
            student.value, student.text, student.valid and student.value == expected,
            1000 * student.latency_s,
        )  # fmt: skip


def size_summary(bundles: list[tinyllm.Bundle]) -> list[dict[str, Any]]:
    """Each bundle's size on disk, split into weights, adapters, engines and stats."""
    rows = []
    for bundle in bundles:
        parts = {"weights": 0, "adapters": 0, "engines": 0, "stats": 0, "other": 0}
        for name, entry in bundle.manifest.files.items():
            top = name.split("/")[0]
            kind = "weights" if name == "weights.safetensors" else top
            parts[kind if kind in parts else "other"] += entry.size
        rows.append(
            {"bundle": bundle.path.name.removesuffix(".tllm"), "stage": bundle.manifest.stage,
             "bytes": bundle.size_bytes(), **parts}
        )  # fmt: skip
    return rows


def answer_text(answer: Any, raw: str) -> str:
    """An answer as one short line: the parsed value, else the raw text it could not parse."""
    if answer is None:
        raw = " ".join(raw.split())
        return f"(invalid) {raw[:40]}" + ("..." if len(raw) > 40 else "")
    return answer if isinstance(answer, str) else json.dumps(answer)


def format_scores(report: dict[str, Any]) -> list[str]:
    """The score table."""
    n = report["settings"]["eval_limit"]
    head = f"{'task':<11}{'metric':<13}{'base zero-shot':>15}{'student':>9}{'student int4':>14}"
    lines = [
        f"Scores on the first {n} test examples of each task (greedy, the task's own prompt):",
        head,
        "-" * len(head),
    ]
    for s in report["scores"]:
        lines.append(
            f"{s['task']:<11}{METRIC_NAMES.get(s['metric'], s['metric']):<13}"
            f"{s['base']:>15.3f}{s['student']:>9.3f}{s['student_int4']:>14.3f}"
        )
    lines.append(
        "(base and student: the float models in transformers; student int4: the exported "
        "engine that serves below)"
    )
    return lines


def format_examples(report: dict[str, Any]) -> list[str]:
    """The hand-written requests, each with both answers, right or wrong, and latency."""
    lines = [
        "Hand-written requests, served one at a time by the int4 engine "
        "(student: the task's adapter; base: the same engine without it):"
    ]
    for e in report["examples"]:
        lines.append(f"{e['task']:<10} {e['text']!r}")
        for who in ("base", "student"):
            mark = "right" if e[f"{who}_right"] else "WRONG"
            answer = answer_text(e[f"{who}_answer"], e[f"{who}_raw"])
            lines.append(f"  {who:<8} {answer:<58} {mark:<6} {e[f'{who}_ms']:>5.0f} ms")
    right = sum(e["student_right"] for e in report["examples"])
    base_right = sum(e["base_right"] for e in report["examples"])
    total = len(report["examples"])
    lines.append(f"student right on {right}/{total}, base on {base_right}/{total}")
    return lines


def format_sizes(report: dict[str, Any]) -> list[str]:
    """Bundle sizes from the import to the served engine."""
    lines = ["Bundles on disk:"]
    for b in report["bundles"]:
        parts = ", ".join(
            f"{k} {b[k] / MIB:.1f}" for k in ("weights", "adapters", "engines", "stats") if b[k]
        )
        lines.append(f"  {b['bundle']:<20} {b['stage']:<9} {b['bytes'] / MIB:>7.1f} MiB  ({parts})")
    first, last = report["bundles"][0], report["bundles"][-1]
    quantized, total = report["quantized_parameters"]
    lines += [
        f"  model: fp32 weights {first['weights'] / MIB:.1f} MiB -> int4 engine "
        f"{last['engines'] / MIB:.1f} MiB ({first['weights'] / last['engines']:.1f}x smaller; "
        f"{quantized / 1e6:.1f}M of {total / 1e6:.1f}M parameters in int4, the embedding "
        "table stays fp32)",
        f"  plus {len(report['tasks'])} task adapters, {last['adapters'] / MIB:.1f} MiB; the "
        "engine serves them all from one copy of the base",
        "  (stats/ holds calibration Hessians for adding tasks later: not needed to serve)",
    ]
    return lines


def format_report(report: dict[str, Any]) -> str:
    """Everything the demo prints at the end."""
    steps = ", ".join(
        f"{name} " + ("cached" if s["cached"] else f"{s['seconds']:.0f}s")
        for name, s in report["steps"].items()
    )
    lines = [
        "",
        *format_scores(report),
        "",
        *format_examples(report),
        "",
        *format_sizes(report),
        "",
        f"steps: {steps}; this run took {report['seconds']:.0f}s (--fresh redoes the cached steps)",
    ]
    return "\n".join(lines)
