"""Metrics against hand-computed values."""

from __future__ import annotations

import pytest

from tinyllm.metrics import normalize_answer, score


def test_accuracy_and_macro_f1() -> None:
    assert score("accuracy", ["a", "b ", "a"], ["a", "a", "a"]) == pytest.approx(2 / 3)
    preds = ["pos", "pos", "neg", "neu"]
    refs = ["pos", "neg", "neg", "neu"]
    # pos: P=1/2 R=1 F=2/3; neg: P=1 R=1/2 F=2/3; neu: F=1.
    assert score("macro_f1", preds, refs) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # An out-of-set prediction is simply wrong for its reference class.
    assert score("macro_f1", ["maybe", "neg"], ["pos", "neg"]) == pytest.approx((0 + 1) / 2)


def test_exact_match_normalization() -> None:
    assert normalize_answer(" 42. ") == "42"
    assert normalize_answer("- 3") == "-3"
    assert score("exact_match", ["42.", "- 3", "1/12", "x"], ["42", "-3", "-1/12", "y"]) == 0.5


def test_slot_f1() -> None:
    ref = '{"city": "Lisbon", "date": "2025-03-14", "guests": 3}'
    pred = '{"city": "lisbon ", "date": "2025-03-14", "guests": 4}'
    # 2 of 3 slots right: P = R = 2/3.
    assert score("slot_f1", [pred], [ref]) == pytest.approx(2 / 3)
    # An invalid prediction adds 3 reference slots and none predicted: P=2/3, R=2/6.
    got = score("slot_f1", [pred, "not json"], [ref, ref])
    assert got == pytest.approx(2 * (2 / 3) * (1 / 3) / (2 / 3 + 1 / 3))
    # Extra predicted keys lower precision; a fenced answer still parses.
    fenced = '```json\n{"city": "Lisbon", "date": "2025-03-14", "guests": 3, "x": 1}\n```'
    assert score("slot_f1", [fenced], [ref]) == pytest.approx(2 * 0.75 * 1 / 1.75)
    assert score("slot_f1", ["[]"], [ref]) == 0.0


def test_rouge_l() -> None:
    assert score("rouge_l", ["the cat sat"], ["the cat sat"]) == pytest.approx(1.0)
    # LCS 3 of 3 predicted and 6 reference tokens: P=1, R=1/2, F=2/3.
    assert score("rouge_l", ["the cat sat"], ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    assert score("rouge_l", [""], ["anything"]) == 0.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score("accuracy", ["a", "b"], ["a"])
