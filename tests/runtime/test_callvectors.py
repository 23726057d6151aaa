"""The shared vectors of the call constraint over patterned strings (callvectors.py) are
Python's answers in every state; the C++ unit tests check the native constraint on them."""

from __future__ import annotations

import json

from callvectors import PATH, disagreements, dumps, vectors


def test_the_vectors_are_current() -> None:
    assert PATH.read_text(encoding="utf-8") == dumps(vectors()), (
        "regenerate: .venv/bin/python tests/runtime/callvectors.py"
    )


def test_the_check_catches_a_wrong_mask_completion_or_forced_text() -> None:
    data = json.loads(PATH.read_text(encoding="utf-8"))
    assert disagreements(data) == []
    walk = data["walks"][3]
    walk["allowed"][5] = f"{int(walk['allowed'][5], 16) ^ 1:x}"  # one token more or less
    data["walks"][7]["complete"] = "1" + data["walks"][7]["complete"][1:]
    step = data["walks"][9]["forced"].index("-")  # a date's "-", forced by its pattern
    data["walks"][9]["forced"][step] = ""
    assert disagreements(data) == [(3, 5), (7, 0), (9, step)]
