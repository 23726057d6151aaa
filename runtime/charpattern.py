"""A small regular-expression subset compiled to a Thompson NFA over characters, so the
call constraint can keep a string argument to its schema's ``pattern`` character by
character.

The subset: literals; ``.`` (any character but ``\\n``, ``\\r``, U+2028, U+2029);
escapes ``\\d \\w \\s`` (ASCII only: ``[0-9]``, ``[A-Za-z0-9_]``, ``[ \\t\\n\\r\\f\\v]``),
``\\n \\t \\r \\f \\v`` and any escaped ASCII punctuation (``\\. \\- \\\\ \\( \\$`` ...); classes
``[...]`` with ranges, ``^`` negation and the escapes above (``\\d \\w \\s`` only in a
class that is not negated); groups ``( )`` and ``(?: )`` with ``|``; quantifiers
``? * + {n} {n,} {n,m}`` (counts up to :data:`MAX_REPEAT`); ``^`` at the start and ``$``
at the end of a top-level branch. Every choice is at most as permissive as Python's
``re`` and ECMAScript's, so a string the NFA accepts passes the check after the call.

Matching is a search, as in JSON Schema: a branch without ``^`` may start anywhere and
one without ``$`` may end anywhere (it behaves as ``[\\s\\S]*p[\\s\\S]*``). Anything else
raises :class:`PatternError`; the constraint then leaves the string free and the check
after the call still applies. runtime/cpp/src/charpattern.cpp is the same machine.
"""

from __future__ import annotations

from collections import deque

from tinyllm.errors import ConfigError

MAX_REPEAT = 256  # the largest count of {n,m}
MAX_STATES = 4096  # the largest NFA

# A class is (ranges, negated); ranges are inclusive (low, high) code points.
_Ranges = tuple[tuple[int, int], ...]
_DIGIT: _Ranges = ((48, 57),)
_WORD: _Ranges = ((48, 57), (65, 90), (95, 95), (97, 122))
_SPACE: _Ranges = ((9, 13), (32, 32))
_DOT: _Ranges = ((10, 10), (13, 13), (0x2028, 0x2029))  # negated: "." excludes these
_CLASSES = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
_CONTROLS = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_META = "^$.|?*+()[]{}\\"

INF = 1 << 30


class PatternError(ConfigError):
    """A pattern outside the constrained subset (or not a regular expression)."""


class _Parser:
    """Recursive descent over the pattern; nodes are tuples:
    ("set", ranges, negated), ("cat", items), ("alt", branches), ("rep", node, lo, hi)."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def fail(self, why: str) -> PatternError:
        return PatternError(f"pattern {self.text!r}: {why} (at {self.i})")

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def top(self) -> list[tuple[bool, tuple, bool]]:
        """The top-level branches: (anchored at the start, node, anchored at the end)."""
        branches = []
        while True:
            start = self.peek() == "^"
            self.i += start
            node = self.concat()
            end = self.peek() == "$"
            self.i += end
            branches.append((start, node, end))
            if self.peek() == "|":
                self.i += 1
                continue
            if self.i < len(self.text):
                raise self.fail(f"{self.peek()!r} here is outside the subset")
            return branches

    def alt(self) -> tuple:
        branches = [self.concat()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.concat())
        return branches[0] if len(branches) == 1 else ("alt", tuple(branches))

    def concat(self) -> tuple:
        items = []
        while self.peek() and self.peek() not in "|)$":
            items.append(self.repeat())
        return ("cat", tuple(items))

    def repeat(self) -> tuple:
        node = self.atom()
        ch = self.peek()
        if ch in ("?", "*", "+") and ch:
            self.i += 1
            lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}[ch]
        elif ch == "{":
            lo, hi = self.counts()
        else:
            return node
        if self.peek() and self.peek() in "?*+{":
            raise self.fail("a quantifier after a quantifier is outside the subset")
        return ("rep", node, lo, hi)

    def number(self) -> int:
        start = self.i
        while self.peek().isascii() and self.peek().isdigit():
            self.i += 1
        if start == self.i:
            raise self.fail("a count is missing")
        value = int(self.text[start : self.i])
        if value > MAX_REPEAT:
            raise self.fail(f"count {value} is over {MAX_REPEAT}")
        return value

    def counts(self) -> tuple[int, int | None]:
        self.i += 1  # "{"
        lo = self.number()
        hi: int | None = lo
        if self.peek() == ",":
            self.i += 1
            hi = None if self.peek() == "}" else self.number()
        if self.peek() != "}":
            raise self.fail("a count is not closed with '}'")
        self.i += 1
        if hi is not None and hi < lo:
            raise self.fail(f"{{{lo},{hi}}} counts down")
        return lo, hi

    def atom(self) -> tuple:
        ch = self.peek()
        self.i += 1
        if ch == "(":
            if self.peek() == "?":
                if self.text[self.i : self.i + 2] != "?:":
                    raise self.fail("only (?: ) of the (? groups is in the subset")
                self.i += 2
            node = self.alt()
            if self.peek() != ")":
                raise self.fail("a group is not closed")
            self.i += 1
            return node
        if ch == "[":
            return self.klass()
        if ch == ".":
            return ("set", _DOT, True)
        if ch == "\\":
            ranges = self.escape(in_class=False, negated=False)
            return ("set", ranges, False)
        if ch in _META:
            raise self.fail(f"{ch!r} here is outside the subset")
        return ("set", ((ord(ch), ord(ch)),), False)

    def escape(self, in_class: bool, negated: bool) -> _Ranges:
        ch = self.peek()
        self.i += 1
        if ch in _CLASSES:
            if negated:  # Python's \d is wider than ours: [^\d] would admit too much
                raise self.fail(f"\\{ch} in a negated class is outside the subset")
            return _CLASSES[ch]
        if ch in _CONTROLS:
            return ((ord(_CONTROLS[ch]),) * 2,)
        if ch and ch in _PUNCT:
            return ((ord(ch), ord(ch)),)
        raise self.fail(f"the escape \\{ch} is outside the subset")

    def klass(self) -> tuple:
        negated = self.peek() == "^"
        self.i += negated
        if self.peek() == "]":
            raise self.fail("a class starting with ']' is outside the subset")
        ranges: list[tuple[int, int]] = []
        while self.peek() != "]":
            lo = self.member(negated)
            if self.peek() == "-" and self.text[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                hi = self.member(negated)
                if len(lo) != 1 or len(hi) != 1 or lo[0][0] != lo[0][1] or hi[0][0] != hi[0][1]:
                    raise self.fail("a range bound is a class")
                if hi[0][0] < lo[0][0]:
                    raise self.fail("a range runs backwards")
                ranges.append((lo[0][0], hi[0][0]))
            else:
                ranges.extend(lo)
        self.i += 1
        return ("set", tuple(ranges), negated)

    def member(self, negated: bool) -> _Ranges:
        ch = self.peek()
        if not ch:
            raise self.fail("a class is not closed")
        self.i += 1
        if ch == "\\":
            return self.escape(in_class=True, negated=negated)
        if ch == "[":
            raise self.fail("'[' inside a class is outside the subset")
        return ((ord(ch), ord(ch)),)


class CharPattern:
    """A compiled pattern: a Thompson NFA whose states are ``("char", ranges, negated,
    next)``, ``("split", a, b)`` or ``("match",)``. A state set is a sorted tuple of char
    and match states (split states are followed at once)."""

    __slots__ = ("need", "reach", "source", "start", "states")

    def __init__(self, source: str) -> None:
        self.source = source
        self.states: list[tuple] = [("match",)]
        branches = _Parser(source).top()
        self.start = self._closure([self._branch(b) for b in branches])
        self.need = self._need()
        self.reach = max(n for n in self.need if n < INF)  # the longest finite need

    def _add(self, state: tuple) -> int:
        if len(self.states) >= MAX_STATES:
            raise PatternError(f"pattern {self.source!r}: over {MAX_STATES} NFA states")
        self.states.append(state)
        return len(self.states) - 1

    def _branch(self, branch: tuple[bool, tuple, bool]) -> int:
        start, node, end = branch
        anything = ("rep", ("set", (), True), 0, None)
        items = (() if start else (anything,)) + (node,) + (() if end else (anything,))
        return self._build(("cat", items), 0)

    def _build(self, node: tuple, nxt: int) -> int:
        """The state that matches ``node`` and then goes on at ``nxt`` (built backwards)."""
        kind = node[0]
        if kind == "set":
            return self._add(("char", node[1], node[2], nxt))
        if kind == "cat":
            for item in reversed(node[1]):
                nxt = self._build(item, nxt)
            return nxt
        if kind == "alt":
            first, *rest = node[1]
            head = self._build(first, nxt)
            return (
                self._add(("split", head, self._build(("alt", tuple(rest)), nxt))) if rest else head
            )
        _, body, lo, hi = node
        if hi is None:  # the loop: body, then back to the split
            loop = self._add(("split", -1, nxt))
            self.states[loop] = ("split", self._build(body, loop), nxt)
            tail = loop
        else:  # body{0,hi-lo} as nested options, each able to leave for nxt
            tail = nxt
            for _ in range(hi - lo):
                tail = self._add(("split", self._build(body, tail), nxt))
        for _ in range(lo):
            tail = self._build(body, tail)
        return tail

    def _closure(self, heads: list[int]) -> tuple[int, ...]:
        seen, out, todo = set(), set(), list(heads)
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            if self.states[s][0] == "split":
                todo.extend(self.states[s][1:])
            else:
                out.add(s)
        return tuple(sorted(out))

    def _need(self) -> list[int]:
        """The fewest characters from each state to a match (0-1 BFS over reversed edges)."""
        back: list[list[tuple[int, int]]] = [[] for _ in self.states]
        for s, st in enumerate(self.states):
            if st[0] == "char":
                back[st[3]].append((s, 1))
            elif st[0] == "split":
                back[st[1]].append((s, 0))
                back[st[2]].append((s, 0))
        need = [INF] * len(self.states)
        need[0] = 0
        todo = deque([0])
        while todo:
            s = todo.popleft()
            for p, w in back[s]:
                if need[s] + w < need[p]:
                    need[p] = need[s] + w
                    (todo.append if w else todo.appendleft)(p)
        return need

    def least(self, states: tuple[int, ...]) -> int:
        """The fewest characters that complete a match from ``states``."""
        return min((self.need[s] for s in states), default=INF)

    def accepts(self, states: tuple[int, ...]) -> bool:
        """The text so far is a match."""
        return 0 in states

    def step(self, states: tuple[int, ...], ch: str) -> tuple[int, ...]:
        """The states after ``ch`` (empty when no state moves on it)."""
        code = ord(ch)
        heads = []
        for s in states:
            st = self.states[s]
            if st[0] == "char" and any(lo <= code <= hi for lo, hi in st[1]) != st[2]:
                heads.append(st[3])
        return self._closure(heads) if heads else ()

    def only(self, states: tuple[int, ...]) -> str | None:
        """The one character every move from ``states`` takes; "" when none moves, None
        when more than one character could."""
        found = ""
        for s in states:
            st = self.states[s]
            if st[0] != "char":
                continue
            if st[2] or len(st[1]) != 1 or st[1][0][0] != st[1][0][1]:
                return None
            ch = chr(st[1][0][0])
            if found and ch != found:
                return None
            found = ch
        return found


def compile_pattern(source: str) -> CharPattern:
    """Compile ``source`` (the subset above); raises :class:`PatternError` outside it."""
    return CharPattern(source)
