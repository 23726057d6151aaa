"""Verifiers accept good outputs and reject bad ones with a reason; answer extraction."""

from __future__ import annotations

import pytest

from tinyllm.api import load_tasks
from tinyllm.verifiers import answer_text, verify

SUITE = load_tasks("builtin")


@pytest.mark.parametrize(
    ("task", "output", "ok", "reason"),
    [
        ("sentiment", "positive", True, ""),
        ("sentiment", "very positive", False, "label_in_set: 'very positive' is not one of"),
        ("booking", '{"city": "Oslo", "date": "2025-01-02", "guests": 2}', True, ""),
        ("booking", '```json\n{"city": "Oslo", "date": "2025-01-02", "guests": 2}\n```', True, ""),
        ("booking", '{"city": "Oslo", "date": "2 Jan", "guests": 2}', False, "does not match"),
        ("booking", '{"city": "Oslo", "guests": 2}', False, "'date' is a required property"),
        ("booking", '{"city": "Oslo", "date": "2025-01-02", "guests": "2"}', False, "not of type"),
        ("booking", "{city: Oslo}", False, "not valid JSON"),
        ("arithmetic", "-3", True, ""),
        ("arithmetic", "2/29", True, ""),
        ("arithmetic", "0.0254", True, ""),
        ("arithmetic", "x = 3", False, "is not a number"),
        ("dates", "2025-06-20T10:00", True, ""),
        ("dates", "2025-06-20 10:00", False, "is not YYYY-MM-DDTHH:MM"),
        ("dates", "2025-13-20T10:00", False, "is not YYYY-MM-DDTHH:MM"),
        ("rewrite", "Find flights.", True, ""),
        ("rewrite", "   ", False, "empty output"),
    ],
)
def test_verify(task: str, output: str, ok: bool, reason: str) -> None:
    verdict = verify(SUITE.task(task), output)
    assert verdict.ok is ok
    assert reason in verdict.reason


@pytest.mark.parametrize(
    ("task", "raw", "answer"),
    [
        ("sentiment", "Positive.", "positive"),
        ("sentiment", "The text is negative\nbecause...", "negative"),
        ("sentiment", "neutral or positive", "neutral or positive"),  # two labels: no pick
        ("intent", "I think set_alarm.", "set_alarm"),
        ("arithmetic", " 42\nsince 40 + 2", "42"),
        ("booking", ' {"a": 1}\n', '{"a": 1}'),
        ("rewrite", "", ""),
    ],
)
def test_answer_text(task: str, raw: str, answer: str) -> None:
    assert answer_text(SUITE.task(task), raw) == answer
