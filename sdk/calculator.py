"""A bounded arithmetic evaluator: its own grammar, exact fractions, never ``eval``.

Grammar (whitespace between tokens is ignored)::

    equation := expr [ "=" expr ]             an equation is solved for its one unknown
    expr     := term { ("+" | "-") term }
    term     := unary { ("*" | "/" | "%") unary }
    unary    := ("+" | "-") unary | power
    power    := atom [ ("^" | "**") unary ]
    atom     := NUMBER | LETTER | ("abs" | "gcd") "(" expr { "," expr } ")" | "(" expr ")"

Bounds, each a :class:`~tinyllm.tools.ToolError` when passed: the input's length, the
digits of one number, an exponent's size, the bits of any intermediate value, and the
nesting depth (parentheses and signs together), so no input can make it run long or
deep.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from tinyllm.errors import TinyLLMError

MAX_CHARS = 512
MAX_DIGITS = 40
MAX_EXPONENT = 256
MAX_BITS = 4096
MAX_DEPTH = 32
TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?|\.\d+)|(\*\*|[-+*/%^(),=])|([A-Za-z]+))")


class CalculatorError(TinyLLMError):
    """An expression the calculator refuses: bad syntax, out of bounds, or undefined."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "num", "op" or "name"
    text: str


def tokenize(text: str) -> list[_Token]:
    """The tokens of an expression; any other character is an error naming it."""
    if len(text) > MAX_CHARS:
        raise CalculatorError(f"the expression has {len(text)} characters (max {MAX_CHARS})")
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None:
            raise CalculatorError(f"unexpected character {text[pos]!r} at {pos}")
        number, op, name = match.groups()
        if number is not None:
            if len(number) > MAX_DIGITS:
                raise CalculatorError(f"a number has more than {MAX_DIGITS} digits")
            tokens.append(_Token("num", number))
        elif op is not None:
            tokens.append(_Token("op", op))
        else:
            tokens.append(_Token("name", name))
        pos = match.end()
    return tokens


def _bounded(value: Fraction) -> Fraction:
    if max(abs(value.numerator).bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise CalculatorError(f"a value grew past {MAX_BITS} bits")
    return value


class _Parser:
    """Recursive descent over the tokens, evaluating as it goes (``unknown``: x's value)."""

    def __init__(self, tokens: list[_Token], unknown: Fraction | None) -> None:
        self.tokens, self.pos, self.depth, self.unknown = tokens, 0, 0, unknown
        self.names: set[str] = set()

    def peek(self) -> str | None:
        return self.tokens[self.pos].text if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> _Token:
        if self.pos >= len(self.tokens):
            raise CalculatorError("the expression ends too early")
        token = self.tokens[self.pos]
        if expected is not None and token.text != expected:
            raise CalculatorError(f"expected {expected!r}, found {token.text!r}")
        self.pos += 1
        return token

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op, right = self.take().text, self.term()
            value = _bounded(value + right if op == "+" else value - right)
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/", "%"):
            op, right = self.take().text, self.unary()
            if op != "*" and right == 0:
                raise CalculatorError("division by zero")
            value = _bounded(
                value * right if op == "*" else value / right if op == "/" else value % right
            )
        return value

    def unary(self) -> Fraction:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalculatorError(f"nested deeper than {MAX_DEPTH}")
        if self.peek() in ("+", "-"):
            sign = self.take().text
            value = self.unary()
            value = -value if sign == "-" else value
        else:
            value = self.power()
        self.depth -= 1
        return value

    def power(self) -> Fraction:
        base = self.atom()
        if self.peek() not in ("^", "**"):
            return base
        self.take()
        exponent = self.unary()
        if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
            raise CalculatorError(f"exponents must be integers of at most {MAX_EXPONENT} in size")
        if base == 0 and exponent < 0:
            raise CalculatorError("division by zero")
        bits = max(abs(base.numerator).bit_length(), base.denominator.bit_length())
        if bits * abs(int(exponent)) > MAX_BITS:
            raise CalculatorError(f"a value grew past {MAX_BITS} bits")
        return _bounded(base ** int(exponent))

    def atom(self) -> Fraction:
        token = self.take()
        if token.kind == "num":
            return Fraction(token.text)
        if token.text == "(":
            value = self.expr()
            self.take(")")
            return value
        if token.kind == "name" and token.text in ("abs", "gcd"):
            return self.function(token.text)
        if token.kind == "name" and len(token.text) == 1:
            self.names.add(token.text)
            if self.unknown is None:
                raise CalculatorError(f"unknown {token.text!r} outside an equation")
            return self.unknown
        raise CalculatorError(f"unexpected {token.text!r}")

    def function(self, name: str) -> Fraction:
        self.take("(")
        args = [self.expr()]
        while self.peek() == ",":
            self.take()
            args.append(self.expr())
        self.take(")")
        if name == "abs":
            if len(args) != 1:
                raise CalculatorError("abs takes one number")
            return abs(args[0])
        if len(args) != 2 or any(a.denominator != 1 for a in args):
            raise CalculatorError("gcd takes two integers")
        return Fraction(math.gcd(int(args[0]), int(args[1])))


def _side(tokens: list[_Token], unknown: Fraction | None) -> tuple[Fraction, set[str]]:
    parser = _Parser(tokens, unknown)
    value = parser.expr()
    if parser.pos != len(tokens):
        raise CalculatorError(f"unexpected {tokens[parser.pos].text!r}")
    return value, parser.names


def evaluate(expression: str) -> Fraction:
    """The exact value of an expression, or the solution of a linear equation in one letter.

    Raises:
        CalculatorError: bad syntax, a bound passed, division by zero, or an equation
            without exactly one solution.
    """
    tokens = tokenize(expression)
    if not tokens:
        raise CalculatorError("the expression is empty")
    equals = [i for i, t in enumerate(tokens) if t.text == "="]
    if not equals:
        return _side(tokens, None)[0]
    if len(equals) > 1:
        raise CalculatorError("an equation has one '='")
    left, right = tokens[: equals[0]], tokens[equals[0] + 1 :]
    names = {t.text for t in tokens if t.kind == "name" and len(t.text) == 1}
    if len(names) != 1:
        raise CalculatorError("an equation needs exactly one unknown letter")

    def f(x: int) -> Fraction:
        return _side(left, Fraction(x))[0] - _side(right, Fraction(x))[0]

    f0, f1, f2 = f(0), f(1), f(2)
    slope = f1 - f0
    if slope == 0 or f2 - f1 != slope:
        raise CalculatorError("the equation has no unique solution (or is not linear)")
    return -f0 / slope


def number_text(value: Fraction, decimal: bool) -> str:
    """A number as the suite writes it: integers plainly, then decimals or a fraction ``a/b``.

    Decimals when the problem has decimals and the value has a finite decimal expansion
    (its denominator divides a power of ten), written exactly, with no float in between
    (``-3253919.9``, not the float's ``-3253919.9000000004``); otherwise an exact fraction,
    as mathematics_dataset answers quotients of integers.
    """
    if value.denominator == 1:
        return str(value.numerator)
    if not decimal:
        return str(value)
    places = _decimal_places(value.denominator)
    if places is None:
        return str(value)
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")


def _decimal_places(denominator: int) -> int | None:
    """The fewest decimal places that write 1/denominator exactly (None: none do)."""
    twos = fives = 0
    while denominator % 2 == 0:
        denominator, twos = denominator // 2, twos + 1
    while denominator % 5 == 0:
        denominator, fives = denominator // 5, fives + 1
    return max(twos, fives) if denominator == 1 else None
