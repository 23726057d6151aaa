"""Shared test vectors of the call constraint over patterned strings: random walks through
calls of a few tools, each state with the tokens Python's constraint allows there and the
text it forces (``CallPrefix.forced()``, which runs on through the characters a pattern
forces). The C++ unit tests (runtime/cpp/tests/test_charpattern.cpp) check that the native
constraint allows the same tokens and forces the same text in every state;
test_callvectors.py checks the file is current.

Regenerate: ``.venv/bin/python tests/runtime/callvectors.py``.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np

from tinyllm.runtime.callconstraint import CallPrefix
from tinyllm.runtime.constraints import JsonTokens
from tinyllm.toolbox import get_tool
from tinyllm.tools import Tool

PATH = Path(__file__).parents[2] / "runtime" / "cpp" / "tests" / "callvectors.json"


def _tool(name: str, **props: dict[str, object]) -> Tool:
    return Tool(name, name, {"type": "object", "properties": props}, lambda **kw: "")


TOOLS = [
    get_tool("date_parser"),
    _tool(
        "codes",
        code={"type": "string", "pattern": r"^(?:[A-Z]{2}|x\d)-\d{1,3}$"},
        tag={"type": "string", "pattern": r'q"\\', "maxLength": 6},  # a search, with escapes
        note={"type": "string", "pattern": "(?=a)", "maxLength": 3},  # outside: free
    ),
    _tool(
        "slash",
        path={"type": "string", "pattern": r"^/[a-z]+(/[a-z]+)*\.?$"},
        end={"type": "string", "pattern": r"^x\n?$"},  # matched: the quote or "\n" next
    ),
]
VOCAB = sorted(
    set('0123456789-: ,{}ABXx/q"\\.é' + string.ascii_lowercase)
    | {"2026", "-0", "12", " 1", ":3", "AB", "x9", '"}}', '", "', '\\"', "\\\\", "\\/", "\\n"}
    | {"tomorrow", "/ab", "/z.", "é9", '{"name": "', "date_parser", "codes", "slash"}
    | {'", "arguments": {"', 'reference": "', 'code": "', 'tag": "', 'note": "', 'path": "'}
    | {'expression": "', "\\u0041", "\t"}
)


def walks(count: int = 40, steps: int = 80, seed: int = 0) -> list[dict[str, object]]:
    """Random walks: each its tokens (vocabulary ids), then per state (after 0, 1, ...
    tokens) whether the call is complete ("1"/"0"), the allowed tokens as a hex mask
    (bit i of the integer: vocabulary entry i) and the forced text."""
    rng = np.random.default_rng(seed)
    tokens = JsonTokens(VOCAB, eos=None)
    out: list[dict[str, object]] = []
    for walk in range(count):
        state, ids, complete, masks, forced = CallPrefix(TOOLS), [], "", [], []
        hurry = 0.2 + 0.6 * (walk % 2)  # how often a walk takes its longest allowed token
        for _ in range(steps):
            allowed = [int(i) for i in tokens.allowed(state)]
            complete += "1" if state.complete else "0"
            masks.append(f"{sum(1 << i for i in allowed):x}")
            forced.append(state.forced())
            if not allowed:
                break
            pick = allowed[int(rng.integers(len(allowed)))]
            longest = max(allowed, key=lambda i: len(VOCAB[i]))
            pick = longest if rng.random() < hurry else pick
            assert state.feed(VOCAB[pick])
            ids.append(pick)
        walked = {"tokens": ids[: len(masks) - 1], "complete": complete, "allowed": masks}
        out.append({**walked, "forced": forced})
    return out


def disagreements(data: dict[str, Any]) -> list[tuple[int, int]]:
    """(walk, step) where the vectors' allowed tokens, completeness or forced text are not
    Python's."""
    tokens = JsonTokens(data["vocab"], eos=None)
    bad = []
    for w, walk in enumerate(data["walks"]):
        state = CallPrefix(TOOLS)
        states = zip(walk["complete"], walk["allowed"], walk["forced"], strict=True)
        for step, (done, mask, forced) in enumerate(states):
            allowed = sum(1 << int(i) for i in tokens.allowed(state))
            if (
                allowed != int(mask, 16)
                or state.complete != (done == "1")
                or state.forced() != forced
            ):
                bad.append((w, step))
            if step < len(walk["tokens"]):
                state.feed(data["vocab"][walk["tokens"][step]])
    return bad


def vectors() -> dict[str, object]:
    return {
        "tools": [{"name": t.name, "parameters": t.parameters} for t in TOOLS],
        "vocab": VOCAB,
        "walks": walks(),
    }


def dumps(data: dict[str, object]) -> str:
    lines = json.dumps(data, ensure_ascii=False, indent=1).splitlines()
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    PATH.write_text(dumps(vectors()), encoding="utf-8")
    print(f"wrote {PATH}")
