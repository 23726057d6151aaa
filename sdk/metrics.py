"""Task metrics over (prediction, reference) pairs; scores are in [0, 1].

Accuracy and macro-F1 come from scikit-learn, ROUGE-L from rouge-score (Google's
reimplementation of ROUGE-1.5.5); exact match and slot F1 are defined here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from tinyllm.errors import missing_dependency
from tinyllm.verifiers import parse_json_output


def normalize_answer(text: str) -> str:
    """Canonical form for exact match: trimmed, no trailing period, inner spaces removed."""
    return "".join(text.strip().rstrip(".").split())


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference (after trimming)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score([r.strip() for r in references], [p.strip() for p in predictions]))


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """F1 averaged over the reference labels (out-of-set predictions count as wrong)."""
    from sklearn.metrics import f1_score

    labels = sorted(set(r.strip() for r in references))
    refs, preds = [r.strip() for r in references], [p.strip() for p in predictions]
    return float(f1_score(refs, preds, labels=labels, average="macro", zero_division=0))


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference after :func:`normalize_answer`."""
    hits = sum(
        normalize_answer(p) == normalize_answer(r)
        for p, r in zip(predictions, references, strict=True)
    )
    return hits / max(len(references), 1)


def _slots(text: str) -> dict[str, Any]:
    try:
        value = parse_json_output(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def slot_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Micro F1 over (key, value) slots of JSON objects; invalid JSON predicts no slots.

    String values compare case-insensitively after trimming; other values exactly.
    """

    def norm(v: Any) -> Any:
        return v.strip().casefold() if isinstance(v, str) else json.dumps(v, sort_keys=True)

    tp = n_pred = n_ref = 0
    for p, r in zip(predictions, references, strict=True):
        pred, ref = _slots(p), _slots(r)
        n_pred, n_ref = n_pred + len(pred), n_ref + len(ref)
        tp += sum(1 for k, v in pred.items() if k in ref and norm(ref[k]) == norm(v))
    if tp == 0:
        return 0.0
    precision, recall = tp / n_pred, tp / n_ref
    return 2 * precision * recall / (precision + recall)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (with stemming), via the rouge-score package."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:
        raise missing_dependency("rouge_score", "suite", "The rouge_l metric") from e
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)
    ]
    return sum(scores) / max(len(scores), 1)


METRIC_FUNCTIONS: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "exact_match": exact_match,
    "slot_f1": slot_f1,
    "rouge_l": rouge_l,
}


def score(metric: str, predictions: Sequence[str], references: Sequence[str]) -> float:
    """Compute a named metric (one of ``tinyllm.tasks.METRICS``)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return METRIC_FUNCTIONS[metric](predictions, references)
