"""Constrained decoding of a tool call: the JSON constraint, extended to the tools' schemas.

A call is written as ``{"name": "<tool>", "arguments": {<properties in schema order>}}``
(:func:`tinyllm.tools.format_call`). :class:`CallPrefix` is a character machine over
that shape for a set of tools: the name is one of the tools, the keys are forced (every
property, in the schema's order), and each value follows its property's type: a string
(escapes allowed, at most ``maxLength`` characters), a string from an ``enum``, an
integer, a number without exponent, or a boolean. A string's ``pattern`` in the subset of
:mod:`tinyllm.runtime.charpattern` is followed too, on the decoded characters (a pattern
outside it is logged and left to the check); ``minLength``, ``minimum`` and ``maximum``
are not constrained token by token. :func:`tinyllm.tools.call_tool` checks every
keyword before the call. It keeps the interface of
:class:`~tinyllm.runtime.constraints.JsonPrefix`, so
:class:`~tinyllm.runtime.constraints.JsonTokens` picks the allowed tokens for it.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tinyllm.argschema import MAX_STRING
from tinyllm.runtime.charpattern import CharPattern, PatternError, compile_pattern
from tinyllm.tools import Tool

log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()  # (tool and property, pattern) already logged

MAX_DIGITS = 18
PLAIN_ROOM = 64  # string room beyond which every plain token fits (the fast path)
ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass(frozen=True)
class _Seg:
    """One piece of a call: fixed text, one of some texts, or a typed value."""

    kind: str  # "lit", "choice", "string", "integer", "number"
    texts: tuple[str, ...] = ()
    limit: int = 0
    pattern: CharPattern | None = None  # a "string" follows it (its states ride in alive)


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> CharPattern | PatternError:
    """A pattern compiled once per process (a call state is made per request)."""
    try:
        return compile_pattern(source)
    except PatternError as e:
        return e


def _pattern(prop: dict[str, Any], where: str) -> CharPattern | None:
    if "pattern" not in prop:
        return None
    compiled = _compiled(prop["pattern"])
    if isinstance(compiled, PatternError):
        if (where, prop["pattern"]) not in _WARNED:  # once, not per request
            _WARNED.add((where, prop["pattern"]))
            log.warning(
                "%s: not constrained token by token, checked after the call: %s", where, compiled
            )
        return None
    return compiled


def _value(prop: dict[str, Any], where: str) -> list[_Seg]:
    kind = prop["type"]
    if kind == "boolean":
        return [_Seg("choice", ("true", "false"))]
    if kind == "string" and "enum" in prop:
        return [_Seg("choice", tuple(json.dumps(v, ensure_ascii=False) for v in prop["enum"]))]
    if kind == "string":
        limit = prop.get("maxLength", MAX_STRING)
        return [_Seg("lit", ('"',)), _Seg("string", limit=limit, pattern=_pattern(prop, where))]
    return [_Seg(kind)]


def call_segments(tool: Tool) -> tuple[_Seg, ...]:
    """The pieces of a call of ``tool``, in writing order."""
    segs = [_Seg("lit", (f'{{"name": {json.dumps(tool.name)}, "arguments": {{',))]
    for i, (key, prop) in enumerate(tool.parameters["properties"].items()):
        sep = ", " if i else ""
        segs.append(_Seg("lit", (f"{sep}{json.dumps(key, ensure_ascii=False)}: ",)))
        segs.extend(_value(prop, f"tool {tool.name}: property {key!r}"))
    segs.append(_Seg("lit", ("}}",)))
    return tuple(segs)


def _common(texts: Sequence[str]) -> str:
    """The longest common prefix of ``texts``."""
    first = min(texts, key=len)
    for i, ch in enumerate(first):
        if any(t[i] != ch for t in texts):
            return first[:i]
    return first


# One thread of the machine: (tool, segment, characters into it, choices alive, sub-state)
_Thread = tuple[int, int, int, tuple[int, ...], str]


class CallPrefix:
    """Which text is still a prefix of a valid call of one of ``tools``."""

    __slots__ = ("key", "segments", "threads")

    def __init__(self, tools: Sequence[Tool]) -> None:
        # the tools' names and schemas: states of different tool sets never share answers
        self.key = json.dumps([[t.name, t.parameters] for t in tools], sort_keys=True)
        self.segments = [call_segments(t) for t in tools]
        self.threads: list[_Thread] = [self._enter(i, 0, "") for i in range(len(tools))]

    def copy(self) -> CallPrefix:
        """An independent copy of this state."""
        other = CallPrefix.__new__(CallPrefix)
        other.key, other.segments, other.threads = self.key, self.segments, list(self.threads)
        return other

    def signature(self) -> tuple[object, ...]:
        """Everything that decides which texts may follow (string room bucketed)."""
        return (self.key, *(self._key(t) for t in self.threads))

    @property
    def mode(self) -> str:
        """``string`` inside a long free string (every plain token fits), ``done`` at the
        end, else ``call``."""
        if self.complete:
            return "done"
        if len(self.threads) == 1:
            tool, seg, pos, _, sub = self.threads[0]
            s = self.segments[tool][seg]
            if s.kind == "string" and not s.pattern and not sub and s.limit - pos > PLAIN_ROOM:
                return "string"
        return "call"

    @property
    def complete(self) -> bool:
        """The text so far is one whole call."""
        return any(seg == len(self.segments[tool]) for tool, seg, *_ in self.threads)

    def forced(self) -> str:
        """The text every valid continuation starts with (the rest of the fixed call text
        up to the next free value; empty where the model has a choice)."""
        texts = [self._forced(t) for t in self.threads]
        return _common(texts) if texts else ""

    def _forced(self, thread: _Thread) -> str:
        out = ""
        while True:
            tool, seg, pos, alive, _ = thread
            segs = self.segments[tool]
            if seg == len(segs):
                return out
            s = segs[seg]
            if s.kind in ("lit", "choice"):
                out += _common([s.texts[i][pos:] for i in alive])
                if len(alive) > 1:
                    return out
                thread = self._enter(tool, seg + 1, "")
                continue
            ch = self._pattern_forced(thread, s) if s.kind == "string" else ""
            if not ch:
                return out
            out += ch
            thread = self._step(thread, ch)[0]

    def _pattern_forced(self, thread: _Thread, s: _Seg) -> str:
        """The one character a patterned string goes on with ("" where there is a choice):
        the closing quote where the pattern matches and no character fits after it, or a
        character written as itself (never one with an escape, as "/" may be written "\\/",
        nor a control character, written only as an escape such as "\\n")."""
        states, sub = thread[3], thread[4]
        if s.pattern is None or sub:
            return ""
        ch = s.pattern.only(states)
        if ch and not self._char(thread, s, ch):
            ch = ""  # it does not fit in the room left
        if s.pattern.accepts(states):
            return '"' if ch == "" else ""
        return ch if ch and ch >= " " and ch not in '"\\/' else ""

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False (and an undefined state) if it leaves the calls."""
        for ch in text:
            self.threads = [n for t in self.threads for n in self._step(t, ch)]
            if not self.threads:
                return False
        return True

    def _key(self, thread: _Thread) -> tuple[object, ...]:
        tool, seg, pos, alive, sub = thread
        segs = self.segments[tool]
        if seg < len(segs) and segs[seg].kind == "string":
            s = segs[seg]
            cap = PLAIN_ROOM + 1 + (s.pattern.reach if s.pattern else 0)
            return (tool, seg, min(s.limit - pos, cap), alive, sub)
        return thread

    def _enter(self, tool: int, seg: int, sub: str) -> _Thread:
        segs = self.segments[tool]
        pattern = segs[seg].pattern if seg < len(segs) else None
        if pattern:
            return (tool, seg, 0, pattern.start, sub)
        alive = tuple(range(len(segs[seg].texts))) if seg < len(segs) else ()
        return (tool, seg, 0, alive, sub)

    def _step(self, thread: _Thread, ch: str) -> list[_Thread]:
        tool, seg, pos, alive, sub = thread
        segs = self.segments[tool]
        if seg == len(segs):
            return []
        s = segs[seg]
        if s.kind in ("lit", "choice"):
            left = tuple(i for i in alive if pos < len(s.texts[i]) and s.texts[i][pos] == ch)
            if not left:
                return []
            if any(len(s.texts[i]) == pos + 1 for i in left):
                return [self._enter(tool, seg + 1, "")]  # texts of a choice never nest
            return [(tool, seg, pos + 1, left, sub)]
        if s.kind == "string":
            return self._string(thread, s, ch)
        return self._number(thread, s, ch)

    def _string(self, thread: _Thread, s: _Seg, ch: str) -> list[_Thread]:
        tool, seg, pos, alive, sub = thread
        if sub == "escape":
            if ch not in ESCAPES:
                return []
            return self._char(thread, s, ESCAPES[ch])
        if ch == '"':
            if s.pattern and not s.pattern.accepts(alive):
                return []
            return [self._enter(tool, seg + 1, "")]
        if ch < " " or pos >= s.limit:
            return []
        if ch != "\\":
            return self._char(thread, s, ch)
        if s.pattern and not any(self._char(thread, s, c) for c in ESCAPES.values()):
            return []  # no escaped character could follow
        return [(tool, seg, pos, alive, "escape")]

    def _char(self, thread: _Thread, s: _Seg, ch: str) -> list[_Thread]:
        """The string after one more (decoded) character ``ch``, if the pattern and the
        room allow it."""
        tool, seg, pos, alive, _ = thread
        if s.pattern is None:
            return [(tool, seg, pos + 1, alive, "")]
        after = s.pattern.step(alive, ch)
        if not after or pos + 1 + s.pattern.least(after) > s.limit:
            return []
        return [(tool, seg, pos + 1, after, "")]

    def _number(self, thread: _Thread, s: _Seg, ch: str) -> list[_Thread]:
        tool, seg, pos, alive, sub = thread
        digits = sub.replace("-", "").replace(".", "")
        if ch == "-" and not sub:
            return [(tool, seg, pos + 1, alive, "-")]
        if ch.isdigit() and ch in "0123456789" and len(digits) < MAX_DIGITS:
            if digits == "0" and "." not in sub:
                return []  # no leading zeros
            return [(tool, seg, pos + 1, alive, sub + ch)]
        if ch == "." and s.kind == "number" and digits and "." not in sub:
            return [(tool, seg, pos + 1, alive, sub + ".")]
        if digits and not sub.endswith("."):  # the number ended: the next piece takes ch
            return self._step(self._enter(tool, seg + 1, ""), ch)
        return []
