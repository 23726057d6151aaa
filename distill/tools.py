"""Tools of the shipped tool pipeline: Python functions with JSON schemas that compute.

Each :class:`Tool` takes JSON arguments and returns the answer text (or raises
:class:`ToolError`). The built-in ones read the request text themselves:

- ``calculator``: arithmetic word problems (sums, products, quotients, remainders, greatest
  common divisors, linear equations in one unknown), evaluated exactly with a safe AST
  walk over :class:`fractions.Fraction` — never ``eval``;
- ``date_parser``: a date/time expression relative to a reference time (``dateparser``);
- ``booking_extractor``: city, date and party size of a booking request (a date search with
  ``dateparser``, party-size phrases, the capitalised place name after "in"/"to").
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from tinyllm.errors import TinyLLMError, missing_dependency


class ToolError(TinyLLMError):
    """A tool could not compute an answer from its arguments."""


@dataclass(frozen=True)
class Tool:
    """A named function with a JSON schema for its arguments and a description for the LLM."""

    name: str
    description: str
    function: Callable[..., str]
    parameters: dict[str, Any] = field(
        default_factory=lambda: {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        }
    )

    def __call__(self, arguments: dict[str, Any]) -> str:
        """Validate the arguments against the schema, then compute."""
        import jsonschema

        errors = list(jsonschema.Draft202012Validator(self.parameters).iter_errors(arguments))
        if errors:
            raise ToolError(f"tool {self.name}: bad arguments: {errors[0].message}")
        return self.function(**arguments)


OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}
WORDS = (
    (r"(?:what is|calculate|evaluate|work out|compute)\s+", ""),
    (r"the value of\s+", ""),
    (r"(?:the )?difference between (-?[\d.]+) and (-?[\d.]+)", r"(\1) - (\2)"),
    (r"\btake away\b", "-"),
    (r"the (?:remainder when )?(-?[\d.]+) is divided by (-?[\d.]+)", r"(\1) % (\2)"),
    (
        r"(?:the )?(?:greatest|highest) common (?:divisor|factor) of (-?\d+) and (-?\d+)",
        r"gcd(\1, \2)",
    ),
    (r"(?:the )?distance between (-?[\d.]+) and (-?[\d.]+)", r"abs((\1) - (\2))"),
    (
        r"(?:put together|add together|sum|(?:the )?sum of|(?:the )?total of)\s+"
        r"(-?[\d.]+) and (-?[\d.]+)",
        r"(\1) + (\2)",
    ),
    (r"add (-?[\d.]+) (?:and|to) (-?[\d.]+)", r"(\1) + (\2)"),
    (r"subtract (-?[\d.]+) from (-?[\d.]+)", r"(\2) - (\1)"),
    (r"(-?[\d.]+) less than (-?[\d.]+)", r"(\2) - (\1)"),
    (r"take (-?[\d.]+) from (-?[\d.]+)", r"(\2) - (\1)"),
    (r"(?:multiply|(?:the )?product of) (-?[\d.]+) (?:and|by) (-?[\d.]+)", r"(\1) * (\2)"),
    (r"divide (-?[\d.]+) by (-?[\d.]+)", r"(\1) / (\2)"),
    (r"\bplus\b", "+"),
    (r"\bminus\b", "-"),
    (r"\btimes\b", "*"),
    (r"\bdivided by\b", "/"),
    (r"\bremainder\b", ""),
)


def _number(value: Fraction, decimal: bool) -> str:
    """A number as the suite writes it: integers plainly, then decimals or a fraction ``a/b``.

    Decimals when the problem has decimals; otherwise an exact fraction, as
    mathematics_dataset answers quotients of integers.
    """
    if value.denominator == 1:
        return str(value.numerator)
    if not decimal:
        return str(value)
    text = f"{float(value):.10f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else str(value)


def _eval(node: ast.AST, unknown: Fraction | None = None) -> Fraction:
    """Evaluate a parsed expression exactly; the only name allowed is the unknown."""
    if isinstance(node, ast.Expression):
        return _eval(node.body, unknown)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _eval(node.operand, unknown)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in OPS:
        left, right = _eval(node.left, unknown), _eval(node.right, unknown)
        if isinstance(node.op, ast.Div | ast.Mod) and right == 0:
            raise ToolError("calculator: division by zero")
        return Fraction(OPS[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs":
        if len(node.args) != 1:
            raise ToolError("calculator: abs takes one number")
        return abs(_eval(node.args[0], unknown))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "gcd":
        args = [_eval(a, unknown) for a in node.args]
        if len(args) != 2 or any(a.denominator != 1 for a in args):
            raise ToolError("calculator: gcd takes two integers")
        return Fraction(math.gcd(int(args[0]), int(args[1])))
    if isinstance(node, ast.Name) and unknown is not None:
        return unknown
    raise ToolError(f"calculator: unsupported expression element {ast.dump(node)[:40]}")


def _parse(expression: str) -> ast.Expression:
    try:
        return ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise ToolError(f"calculator: cannot parse {expression.strip()[:60]!r}") from e


def calculator(text: str) -> str:
    """Solve an arithmetic word problem or a linear equation (``Solve 3*x + 1 = 7 for x``)."""
    problem = text.strip().rstrip(".?!").strip()
    solve = re.match(r"(?i)^solve (.+?)=(.+?) for ([a-z])$", problem)
    if solve:
        left, right = _parse(solve.group(1)), _parse(solve.group(2))

        def f(x: Fraction) -> Fraction:
            return _eval(left, x) - _eval(right, x)

        slope = f(Fraction(1)) - f(Fraction(0))
        if slope == 0:
            raise ToolError("calculator: the equation has no unique solution")
        return _number(-f(Fraction(0)) / slope, "." in problem)
    expression = problem
    for pattern, replacement in WORDS:
        expression = re.sub(pattern, replacement, expression, flags=re.I)
    return _number(_eval(_parse(expression)), "." in problem)


def date_parser(text: str) -> str:
    """Resolve ``Reference time: YYYY-MM-DD HH:MM (...). Expression: ...`` to ISO minutes."""
    match = re.search(r"Reference time:\s*(\d{4}-\d\d-\d\d \d\d:\d\d).*?Expression:\s*(.+)", text)
    if not match:
        raise ToolError("date_parser: expected 'Reference time: ... Expression: ...'")
    base = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M")
    parsed = _dateparser().parse(
        match.group(2).strip(),
        settings={
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": "future",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    if parsed is None:
        raise ToolError(f"date_parser: cannot read {match.group(2).strip()[:60]!r}")
    return f"{parsed:%Y-%m-%dT%H:%M}"


def _dateparser() -> Any:
    try:
        import dateparser
    except ImportError as e:
        raise missing_dependency("dateparser", "suite", "The date_parser tool") from e
    return dateparser


NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
PARTY = (
    (r"\b(?:just me|a single traveller|one person)\b", "1"),
    (r"\ba couple\b", "2"),
    (
        r"\b(\d+|one|two|three|four|five|six|seven|eight|nine|ten)\s+"
        r"(?:guests?|people|persons?|adults|ppl)\b",
        r"\1",
    ),
    (r"\b(?:party of|table for|we are)\s+(\d+|one|two|three|four|five|six|seven|eight)\b", r"\1"),
)
DATE_PATTERNS = (
    r"\d{4}-\d\d-\d\d",
    r"\d\d/\d\d/\d{4}",
    r"(?:\w+day, )?(?:the )?\d{1,2}(?:st|nd|rd|th)? (?:of )?[A-Z][a-z]+ \d{4}",
    r"(?:\w+day, )?[A-Z][a-z]+ \d{1,2}(?:st|nd|rd|th)?,? \d{4}",
)


def _guests(text: str) -> int:
    for pattern, group in PARTY:
        match = re.search(pattern, text, flags=re.I)
        if match:
            value = match.expand(group).lower()
            return NUMBER_WORDS.get(value) or int(value)
    raise ToolError("booking_extractor: no party size found")


def _date(text: str) -> str:
    for pattern in DATE_PATTERNS:
        match = re.search(pattern, text)
        if match:
            parsed = _dateparser().parse(match.group(0), settings={"DATE_ORDER": "MDY"})
            if parsed is not None:
                return f"{parsed:%Y-%m-%d}"
    raise ToolError("booking_extractor: no date found")


CALENDAR = (
    "January|February|March|April|May|June|July|August|September|October|November|December|"
    "Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Oct|Nov|Dec|"
    "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
)


def _city(text: str) -> str:
    word = rf"(?!(?:{CALENDAR})\b)[A-ZÀ-Þ][\w'-]*"
    joiner = r"de|do|da|del|di|la|le|am|an|upon|sur|sul|im|an der|auf"
    place = rf"({word}(?:[ -](?:{word}|(?:{joiner})(?= [A-ZÀ-Þ]))){{0,4}})"
    for pattern in (rf"\b(?:in|to|at) {place}", rf"^reserve {place}"):
        match = re.search(pattern, text)
        if match:
            return match.group(1)
    raise ToolError("booking_extractor: no city found")


def booking_extractor(text: str) -> str:
    """City, date (YYYY-MM-DD) and party size of a booking request, as the task's JSON."""
    return json.dumps(
        {"city": _city(text), "date": _date(text), "guests": _guests(text)}, ensure_ascii=False
    )


BUILTIN_TOOLS = (
    Tool(
        "calculator",
        "computes arithmetic: sums, differences, products, quotients, "
        "remainders, greatest common divisors, and solves linear equations",
        calculator,
    ),
    Tool(
        "date_parser",
        "converts a date or time expression to an absolute date and time, "
        "relative to a reference time",
        date_parser,
    ),
    Tool(
        "booking_extractor",
        "extracts the city, date and number of guests of a travel booking request",
        booking_extractor,
    ),
)
