"""The pattern subset: the NFA accepts what Python's ``re.search`` accepts on tables of
patterns and strings, patterns outside the subset are refused, and a compiler with a
broken quantifier is caught by the same tables."""

from __future__ import annotations

import re

import pytest

from tinyllm.runtime import charpattern
from tinyllm.runtime.charpattern import PatternError, compile_pattern

DATE = "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}$"
TABLE = {  # pattern: strings, half matching, half not (re.search is the reference)
    DATE: ["2026-01-01 10:00", "2026-01-01 10:0", "tomorrow at 5pm", "12026-01-01 10:00", ""],
    "^a.c$": ["abc", "a.c", "ac", "a\nc", "abcd"],
    r"^\d+(\.\d{1,2})?$": ["12", "12.5", "12.50", "12.505", ".5", "1."],
    r"^[A-Z][a-z]*( [A-Z][a-z]*)*$": ["Paris", "New York", "new York", "New  York", ""],
    r"^(cat|dog)s?$": ["cat", "dogs", "cats", "catdog", "do"],
    r"^[^0-9\-]+$": ["abc", "a-b", "a1", "", "é"],
    r"^\w+@\w+\.(com|org)$": ["a_1@x.com", "a@x.org", "a@x.net", "@x.com"],
    r"^\s*\(\d{3}\) \d{3}-\d{4}$": ["(555) 123-4567", "  (555) 123-4567", "555 123-4567"],
    r"^x{2,}$": ["x", "xx", "xxxxx", "xxy"],
    r"^x{0,2}y$": ["y", "xy", "xxy", "xxxy"],
    r"^(?:ab|a)(?:bc|c)$": ["abc", "abbc", "ac", "ab"],
    r"^\\\.\$\^\/$": ["\\.$^/", "\\.$^", "x"],
    r"^(a*)*b$": ["b", "aaab", "aaa", ""],
    "^$": ["", "a"],
    "^ab|cd$": ["abxx", "xxcd", "xxab", "cdxx"],
    "[0-9]{3}": ["a123b", "12", "x9999"],  # unanchored: a search
    "^Z": ["Zoo", "aZ"],
    "end$": ["the end", "end.", ""],
    "^(a|)$": ["", "a", "aa"],
}
REFUSED = [
    "(ab",  # not closed
    "[a-",
    "a{3,1}",  # counts down
    "[z-a]",  # a range backwards
    "*a",  # nothing to repeat
    "a**",  # a quantifier after a quantifier (also the lazy a*?)
    "a*?",
    "a{,3}",
    "a{2000}",  # an absurd count
    "(a{200}){200}",  # too many states
    "a^b",  # an anchor inside
    "a$b",
    "(^a)",
    r"\bword",  # outside the subset: word boundaries, back references, lookaround
    r"(a)\1",
    "(?=a)",
    r"[^\d]",  # Python's \d is wider than ours, so the negation would admit too much
    r"\D",
    "[]a]",
    "a]",
    "{",
]


def nfa_matches(pattern: str, text: str) -> bool:
    compiled = compile_pattern(pattern)
    states = compiled.start
    for ch in text:
        states = compiled.step(states, ch)
        if not states:
            return False
    return compiled.accepts(states)


def mismatches() -> list[tuple[str, str]]:
    return [
        (p, s)
        for p, strings in TABLE.items()
        for s in strings
        if nfa_matches(p, s) != (re.search(p, s) is not None)
    ]


def test_the_nfa_agrees_with_re_search_on_the_tables() -> None:
    assert mismatches() == []
    for p, strings in TABLE.items():  # each pattern is tested both ways
        assert {re.search(p, s) is not None for s in strings} == {True, False}, p


def test_patterns_outside_the_subset_are_refused() -> None:
    for p in REFUSED:
        with pytest.raises(PatternError, match=re.escape(repr(p))):
            compile_pattern(p)


def test_the_subset_is_stricter_than_re_where_they_differ() -> None:
    """ASCII classes and a "." without line ends: never a string the check would refuse."""
    assert re.search(r"^\d$", "٣") and not nfa_matches(r"^\d$", "٣")
    assert re.search("^.$", "\r") and not nfa_matches("^.$", "\r")
    assert re.search("^a$", "a\n") and not nfa_matches("^a$", "a\n")


def test_a_compiler_that_drops_the_upper_count_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broken {n,m} (taken as {n,}) fails the tables above."""
    counts = charpattern._Parser.counts

    def unbounded(self: charpattern._Parser) -> tuple[int, int | None]:
        return counts(self)[0], None

    monkeypatch.setattr(charpattern._Parser, "counts", unbounded)
    bad = mismatches()
    assert (DATE, "12026-01-01 10:00") in bad  # five digits of a year
    assert (r"^x{0,2}y$", "xxxy") in bad and (r"^\d+(\.\d{1,2})?$", "12.505") in bad


def test_need_and_forced_characters() -> None:
    date = compile_pattern(DATE)
    assert date.least(date.start) == 16 and date.reach == 16
    assert date.only(date.start) is None  # any digit
    states = date.start
    for ch in "2026":
        states = date.step(states, ch)
    assert date.only(states) == "-" and not date.accepts(states)
    assert date.step(states, "x") == ()
