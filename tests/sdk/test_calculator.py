"""The calculator's grammar against hand-computed values, and its bounds against hostile input."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tinyllm.calculator import MAX_DEPTH, CalculatorError, evaluate, number_text


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", Fraction(7)),
        ("(1 + 2) * 3", Fraction(9)),
        ("-2 - -4 - (12 - 14)", Fraction(4)),
        ("7 / 2", Fraction(7, 2)),
        ("163 % 8", Fraction(3)),
        ("2 ^ 10", Fraction(1024)),
        ("2 ** -2", Fraction(1, 4)),
        ("-2 ^ 2", Fraction(-4)),
        ("gcd(3888, 756)", Fraction(108)),
        ("abs(0.5 - 36803)", Fraction("36802.5")),
        ("8*c - 20 = 4", Fraction(3)),
        ("55 + 11 = 22*r", Fraction(3)),
        ("-0.4 * 0.065", Fraction("-0.026")),
    ],
)
def test_evaluate(expression: str, value: Fraction) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "unexpected character '_'"),
        ("os.system", "unexpected character '.'"),
        ("2 ** 1000000", "exponents must be integers of at most"),
        ("10 ** 200 ** 2", "exponents must be integers of at most"),
        ("999999999 ** 250", "grew past"),
        ("2 ** 0.5", "exponents must be integers"),
        ("(" * 100 + "1" + ")" * 100, "nested deeper"),
        ("-" * 100 + "1", "nested deeper"),
        ("1" * 100, "more than 40 digits"),
        ("1+" * 300 + "1", "characters"),
        ("1 / 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("nan", "unexpected 'nan'"),
        ("inf + 1", "unexpected 'inf'"),
        ("x + 1", "unknown 'x' outside an equation"),
        ("2*x = 2*x + 1", "no unique solution"),
        ("x*x = 4", "not linear"),
        ("x + y = 1", "exactly one unknown"),
        ("1 +", "ends too early"),
        ("(1", "ends too early"),
        ("1 2", "unexpected '2'"),
        ("gcd(1.5, 2)", "gcd takes two integers"),
        ("", "empty"),
    ],
)
def test_evaluate_refuses_hostile_or_bad_input(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message):
        evaluate(expression)


def test_depth_bound_allows_reasonable_nesting() -> None:
    depth = MAX_DEPTH // 2 - 1
    assert evaluate("(" * depth + "1" + ")" * depth) == 1


def test_a_ten_megabyte_expression_is_refused_at_once() -> None:
    with pytest.raises(CalculatorError, match="characters"):
        evaluate("9" * 10_000_000)


def test_number_text() -> None:
    assert number_text(Fraction(614, 5), decimal=False) == "614/5"
    assert number_text(Fraction("-0.026"), decimal=True) == "-0.026"
    assert number_text(Fraction(1, 3), decimal=True) == "1/3"
    assert number_text(Fraction(6), decimal=True) == "6"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # past float precision (suite answers the tool used to write as fractions)
        (Fraction("-3253919.9"), "-3253919.9"),
        (Fraction("23214294.7"), "23214294.7"),
        (Fraction("-14026953.2"), "-14026953.2"),
        (Fraction("0.0000000000001"), "0.0000000000001"),
        (Fraction("-0.5"), "-0.5"),
        (Fraction(1, 2**20), "0.00000095367431640625"),
        (Fraction(7, 6), "7/6"),  # no finite decimal: a fraction
    ],
)
def test_number_text_writes_decimals_exactly(value: Fraction, text: str) -> None:
    assert number_text(value, decimal=True) == text
    assert Fraction(text) == value
