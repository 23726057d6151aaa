"""The tools and tasks with tools that the native tool tests serve (the ``tool_bundle``
fixture, test_native_tools.py); imported by bare name, as tests/runtime/cpp is on the
import path while its tests run."""

from __future__ import annotations

import time

from tinyllm.toolbox import calculator
from tinyllm.tools import Tool

EXPRESSIONS = ["2 + 3", "4 * 5", "7 / 2"]
TIME = "^[0-2][0-9]:[0-5][0-9]$"


def broken(expression: str) -> str:
    raise ValueError("the tool broke")


def slow(expression: str) -> str:
    time.sleep(0.6)
    return calculator(expression)


def bundle_tools() -> list[Tool]:
    """Tools whose enums leave the random model few choices, so outcomes are checkable."""
    fixed = {"type": "string", "enum": EXPRESSIONS}
    one = {"type": "object", "properties": {"expression": fixed}, "required": ["expression"]}
    free = {"type": "string", "minLength": 1, "maxLength": 12}
    short = {"type": "object", "properties": {"expression": free}, "required": ["expression"]}
    picky = {"expression": {**fixed, "pattern": "^Z"}, "twice": {"type": "boolean"}}
    clock = {"type": "string", "pattern": TIME, "maxLength": 5}
    return [
        Tool("n_fixed", "calculator on fixed expressions", one, calculator),
        Tool("n_broken", "always fails", one, broken),
        Tool("n_short", "calculator on short expressions", short, calculator),
        Tool(
            "n_picky",
            "a pattern no enum value matches",
            {"type": "object", "properties": picky},
            lambda expression, twice=False: "never",
        ),
        Tool(
            "n_clock",
            "a free string kept to a pattern token by token",
            {"type": "object", "properties": {"when": clock}, "required": ["when"]},
            lambda when: when,
        ),
        Tool("n_slow", "too slow", one, slow, timeout_s=0.2),
        Tool("n_nocb", "registered in Python only", one, calculator),
    ]


TOOL_TASKS = {  # name: (tools, result)
    "calc": (["n_fixed"], "answer"),
    "calc_ctx": (["n_fixed"], "context"),
    "two": (["n_short", "n_fixed"], "answer"),
    "broken": (["n_broken"], "answer"),
    "free": (["n_short"], "answer"),
    "picky": (["n_picky"], "answer"),
    "clock": (["n_clock"], "answer"),
    "slow": (["n_slow"], "answer"),
    "nocb": (["n_nocb"], "answer"),
}
