"""Built-in tools against hand-computed answers, and their errors."""

from __future__ import annotations

import json

import pytest

from tinyllm.distill.tools import (
    BUILTIN_TOOLS,
    ToolError,
    booking_extractor,
    calculator,
    date_parser,
)


@pytest.mark.parametrize(
    ("problem", "answer"),
    [
        ("Solve 8*c - 20 = 4 for c.", "3"),
        ("Solve 55 + 11 = 22*r for r.", "3"),
        ("What is -61.301 less than -0.2?", "61.101"),
        ("Evaluate -2 - -4 - (12 - 14).", "4"),
        ("Divide -892 by -2.", "446"),
        ("What is -614 divided by -5?", "614/5"),
        ("Work out -0.4 * 0.065.", "-0.026"),
        ("What is the remainder when 163 is divided by 8?", "3"),
        ("Calculate the highest common factor of 3888 and 756.", "108"),
        ("Subtract 0.7732 from -0.2.", "-0.9732"),
        ("What is the distance between 36803 and -0.5?", "36803.5"),
        # the suite's "difference between a and b" is |a - b| (its train split: 10 and 74
        # give 64, 18.4486 and 10 give 8.4486)
        ("What is the difference between 10 and 74?", "64"),
        ("What is the difference between 18.4486 and 10?", "8.4486"),
        ("What is the difference between -0.7 and 0.5127?", "1.2127"),
        # decimals past a float's precision stay decimals (not -32539199/10)
        ("What is 0.1 - 3253920?", "-3253919.9"),
        ("Put together 23214295 and -0.3.", "23214294.7"),
    ],
)
def test_calculator(problem: str, answer: str) -> None:
    assert calculator(problem) == answer


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("Divide 3 by 0.", "division by zero"),
        ("__import__('os').system('true')", "unexpected character '_'"),
        ("What is the meaning of life?", "unexpected 'the'"),
        ("Solve 2*x = 2*x + 1 for x.", "no unique solution"),
    ],
)
def test_calculator_refuses_what_it_cannot_compute(problem: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        calculator(problem)


def test_date_parser() -> None:
    text = "Reference time: 2026-07-09 21:25 (Thursday). Expression: next friday at 8am"
    assert date_parser(text) == "2026-07-10T08:00"
    with pytest.raises(ToolError, match="expected 'Reference time"):
        date_parser("next friday")
    with pytest.raises(ToolError, match="cannot read"):
        date_parser("Reference time: 2026-07-09 21:25. Expression: when pigs fly")


def test_booking_extractor() -> None:
    got = booking_extractor(
        "Book a hotel in Port Janetchester on Friday, May 30th 2025 for 2 people."
    )
    assert json.loads(got) == {"city": "Port Janetchester", "date": "2025-05-30", "guests": 2}
    got = booking_extractor("reserve Faro 07/28/2026 2 ppl")
    assert json.loads(got) == {"city": "Faro", "date": "2026-07-28", "guests": 2}
    with pytest.raises(ToolError, match="no party size"):
        booking_extractor("Book a hotel in Oslo on 2025-01-01.")


def test_tools_check_their_arguments_against_the_schema() -> None:
    tool = BUILTIN_TOOLS[0]
    assert tool({"text": "What is 2 plus 3?"}) == "5"
    with pytest.raises(ToolError, match="bad arguments: 'text' is a required property"):
        tool({"expression": "2+3"})
