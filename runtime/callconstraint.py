"""Constrained decoding of a tool call: the JSON constraint, extended to the tools' schemas.

A call is written as ``{"name": "<tool>", "arguments": {<properties in schema order>}}``
(:func:`tinyllm.tools.format_call`). :class:`CallPrefix` is a character machine over
that shape for a set of tools: the name is one of the tools, the keys are forced (every
property, in the schema's order), and each value follows its property's type: a string
(escapes allowed, at most ``maxLength`` characters), a string from an ``enum``, an
integer, a number without exponent, or a boolean. ``pattern``, ``minimum`` and
``maximum`` are not constrained token by token; :func:`tinyllm.tools.call_tool` checks
them before the call. It keeps the interface of
:class:`~tinyllm.runtime.constraints.JsonPrefix`, so
:class:`~tinyllm.runtime.constraints.JsonTokens` picks the allowed tokens for it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tinyllm.argschema import MAX_STRING
from tinyllm.tools import Tool

MAX_DIGITS = 18
PLAIN_ROOM = 64  # string room beyond which every plain token fits (the fast path)


@dataclass(frozen=True)
class _Seg:
    """One piece of a call: fixed text, one of some texts, or a typed value."""

    kind: str  # "lit", "choice", "string", "integer", "number"
    texts: tuple[str, ...] = ()
    limit: int = 0


def _value(prop: dict[str, Any]) -> list[_Seg]:
    kind = prop["type"]
    if kind == "boolean":
        return [_Seg("choice", ("true", "false"))]
    if kind == "string" and "enum" in prop:
        return [_Seg("choice", tuple(json.dumps(v, ensure_ascii=False) for v in prop["enum"]))]
    if kind == "string":
        return [_Seg("lit", ('"',)), _Seg("string", limit=prop.get("maxLength", MAX_STRING))]
    return [_Seg(kind)]


def call_segments(tool: Tool) -> tuple[_Seg, ...]:
    """The pieces of a call of ``tool``, in writing order."""
    segs = [_Seg("lit", (f'{{"name": {json.dumps(tool.name)}, "arguments": {{',))]
    for i, (key, prop) in enumerate(tool.parameters["properties"].items()):
        sep = ", " if i else ""
        segs.append(_Seg("lit", (f"{sep}{json.dumps(key, ensure_ascii=False)}: ",)))
        segs.extend(_value(prop))
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
            if s.kind == "string" and sub == "" and s.limit - pos > PLAIN_ROOM:
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
        tool, seg, pos, alive, _ = thread
        segs, out = self.segments[tool], ""
        while seg < len(segs) and segs[seg].kind in ("lit", "choice"):
            rest = _common([segs[seg].texts[i][pos:] for i in alive])
            out += rest
            if len(alive) > 1:
                break
            seg, pos = seg + 1, 0
            alive = tuple(range(len(segs[seg].texts))) if seg < len(segs) else ()
        return out

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
            room = segs[seg].limit - pos
            return (tool, seg, min(room, PLAIN_ROOM + 1), alive, sub)
        return thread

    def _enter(self, tool: int, seg: int, sub: str) -> _Thread:
        segs = self.segments[tool]
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
            return [(tool, seg, pos + 1, alive, "")] if ch in '"\\/bfnrt' else []
        if ch == '"':
            return [self._enter(tool, seg + 1, "")]
        if ch < " " or pos >= s.limit:
            return []
        return [(tool, seg, pos + (ch != "\\"), alive, "escape" if ch == "\\" else "")]

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
