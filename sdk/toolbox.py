"""The tool registry, and the built-in tools: calculator, date parser, booking extractor.

Tools are registered by name (:func:`register_tool`) and looked up by the names a task's
spec gives (:func:`get_tool`); the built-ins are always there.

- ``calculator``: ``{"expression": ...}`` in the grammar of :mod:`tinyllm.calculator`
  (exact fractions, bounded, never ``eval``); an equation such as ``8*c - 20 = 4`` is
  solved for its unknown. :func:`expression_of` turns an arithmetic word problem into such
  an expression (what the teacher pipeline does with a request's text);
- ``date_parser``: ``{"reference": "YYYY-MM-DD HH:MM", "expression": ...}`` to ISO minutes
  (``dateparser``, the ``suite`` extra);
- ``booking_extractor``: ``{"text": ...}`` to the booking task's JSON (city, date, guests).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from typing import Any

from tinyllm.calculator import evaluate, number_text
from tinyllm.errors import ConfigError, missing_dependency
from tinyllm.tools import Tool, ToolError

WORDS = (
    (r"(?:what is|calculate|evaluate|work out|compute)\s+", ""),
    (r"the value of\s+", ""),
    # mathematics_dataset answers "the difference between a and b" with |a - b|
    (r"(?:the )?difference between (-?[\d.]+) and (-?[\d.]+)", r"abs((\1) - (\2))"),
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


def expression_of(problem: str) -> str:
    """The calculator expression of a word problem (``Solve A = B for x`` gives ``A = B``)."""
    problem = problem.strip().rstrip(".?!").strip()
    solve = re.match(r"(?i)^solve (.+?=.+?) for [a-z]$", problem)
    if solve:
        return solve.group(1).strip()
    expression = problem
    for pattern, replacement in WORDS:
        expression = re.sub(pattern, replacement, expression, flags=re.I)
    return expression.strip()


def calculator(expression: str) -> str:
    """The exact value of ``expression`` (or an equation's solution), as the suite writes it."""
    return number_text(evaluate(expression), "." in expression)


REFERENCE = re.compile(r"Reference time:\s*(\d{4}-\d\d-\d\d \d\d:\d\d).*?Expression:\s*(.+)")


def date_arguments(text: str) -> dict[str, Any]:
    """``{"reference", "expression"}`` of ``Reference time: ... Expression: ...`` text."""
    match = REFERENCE.search(text)
    if not match:
        raise ToolError("expected 'Reference time: ... Expression: ...'")
    return {"reference": match.group(1), "expression": match.group(2).strip()}


def date_parser(reference: str, expression: str) -> str:
    """Resolve a date/time ``expression`` relative to ``reference`` to ``YYYY-MM-DDTHH:MM``."""
    base = datetime.strptime(reference, "%Y-%m-%d %H:%M")
    parsed = _dateparser().parse(
        expression,
        settings={
            "RELATIVE_BASE": base,
            "PREFER_DATES_FROM": "future",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    if parsed is None:
        raise ToolError(f"cannot read {expression[:60]!r}")
    return f"{parsed:%Y-%m-%dT%H:%M}"


def _warm_dateparser() -> None:
    """Load dateparser's language data (seconds, on the first unreadable text) untimed."""
    _dateparser().parse("xyzzy", settings={"RELATIVE_BASE": datetime(2000, 1, 1)})


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
    raise ToolError("no party size found")


def _date(text: str) -> str:
    for pattern in DATE_PATTERNS:
        match = re.search(pattern, text)
        if match:
            parsed = _dateparser().parse(match.group(0), settings={"DATE_ORDER": "MDY"})
            if parsed is not None:
                return f"{parsed:%Y-%m-%d}"
    raise ToolError("no date found")


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
    raise ToolError("no city found")


def booking_extractor(text: str) -> str:
    """City, date (YYYY-MM-DD) and party size of a booking request, as the task's JSON."""
    return json.dumps(
        {"city": _city(text), "date": _date(text), "guests": _guests(text)}, ensure_ascii=False
    )


def _schema(**properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


BUILTIN_TOOLS = (
    Tool(
        "calculator",
        "computes arithmetic: sums, differences, products, quotients, "
        "remainders, greatest common divisors, and solves linear equations",
        _schema(expression={"type": "string", "minLength": 1, "maxLength": 256}),
        calculator,
        lambda text: {"expression": expression_of(text)},
    ),
    Tool(
        "date_parser",
        "converts a date or time expression to an absolute date and time, "
        "relative to a reference time",
        _schema(
            reference={
                "type": "string",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$",
            },
            expression={"type": "string", "minLength": 1, "maxLength": 200},
        ),
        date_parser,
        date_arguments,
        timeout_s=10.0,
        setup=_warm_dateparser,
    ),
    Tool(
        "booking_extractor",
        "extracts the city, date and number of guests of a travel booking request",
        _schema(text={"type": "string", "minLength": 1, "maxLength": 1000}),
        booking_extractor,
        lambda text: {"text": text},
        timeout_s=10.0,
        setup=_warm_dateparser,
    ),
)


_REGISTRY: dict[str, Tool] = {}
_LOCK = threading.Lock()


def register_tool(tool: Tool, replace: bool = False) -> None:
    """Make ``tool`` callable by name from task specs (``replace`` to swap an existing one)."""
    with _LOCK:
        if tool.name in _REGISTRY and not replace:
            raise ConfigError(
                f"a tool named {tool.name!r} is already registered; pass replace=True to swap it"
            )
        _REGISTRY[tool.name] = tool


def get_tool(name: str) -> Tool:
    """The registered tool called ``name``; an unknown name lists the registered ones."""
    _builtins()
    tool = _REGISTRY.get(name)
    if tool is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown tool {name!r}; registered tools: {known}")
    return tool


def tool_names() -> list[str]:
    """Names of every registered tool (the built-ins included)."""
    _builtins()
    return sorted(_REGISTRY)


def _builtins() -> None:
    with _LOCK:
        for tool in BUILTIN_TOOLS:
            _REGISTRY.setdefault(tool.name, tool)
