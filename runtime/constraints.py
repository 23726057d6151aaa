"""Constrained decoding of JSON: keep the output a valid JSON prefix, token by token.

:class:`JsonPrefix` is a character-level JSON syntax machine (RFC 8259: objects, arrays,
strings with escapes, numbers, literals). :class:`JsonTokens` knows, for a state, which
tokens' texts extend a valid prefix (end of sequence only once the value is complete):
it scans the vocabulary once per distinct state and caches the answer, since generation
revisits few states (inside a string, after a key, ...). :func:`pick_json_token` takes
the best allowed token. It constrains syntax, not the schema: the router still checks
the schema afterwards and reports a mismatch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tinyllm.runtime.sampling import GenerationConfig, sample

WHITESPACE = " \t\n\r"
DIGITS = "0123456789"
HEX = DIGITS + "abcdefABCDEF"
LITERALS = {"t": "rue", "f": "alse", "n": "ull"}
NUMBER_END = {"zero", "int", "frac", "exp_digits"}
MAX_BLANK = 16


def _number(state: str, ch: str) -> str | None:
    """Next state of the number grammar ``-?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?``, or None."""
    digit = ch in DIGITS
    if state == "start" and ch == "-":
        return "sign"
    if state in ("start", "sign"):
        return "zero" if ch == "0" else "int" if digit else None
    if state in ("zero", "int", "frac") and ch in "eE":
        return "exp"
    if state in ("zero", "int") and ch == ".":
        return "dot"
    if state == "exp" and ch in "+-":
        return "exp_sign"
    table = {"int": "int", "dot": "frac", "frac": "frac"}
    table |= {"exp": "exp_digits", "exp_sign": "exp_digits", "exp_digits": "exp_digits"}
    return table.get(state) if digit else None


class Prefix(Protocol):
    """A character machine over valid output prefixes (:class:`JsonPrefix`, or a tool
    call's :class:`~tinyllm.runtime.callconstraint.CallPrefix`)."""

    @property
    def mode(self) -> str:
        """``string`` where every plain text fits, ``done`` once complete."""
        ...

    @property
    def complete(self) -> bool:
        """The text so far is a whole value."""
        ...

    def copy(self) -> Prefix:
        """An independent copy."""
        ...

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False if it leaves the valid prefixes."""
        ...

    def forced(self) -> str:
        """The text every valid continuation starts with ("" where there is a choice)."""
        ...

    def signature(self) -> tuple[object, ...]:
        """Everything that decides which texts may follow."""
        ...


class JsonPrefix:
    """Which text is still a prefix of one JSON value (whitespace around it allowed)."""

    __slots__ = ("blank", "hex", "key", "literal", "mode", "number", "root", "stack")

    def __init__(self, root: str = "") -> None:
        """``root`` ``"{"`` or ``"["`` requires the value to be an object or an array."""
        self.root = root
        self.blank = 0  # whitespace in a row outside strings (bounded: no endless padding)
        self.stack: list[str] = []
        self.mode = "value"
        self.key = False
        self.number = ""
        self.literal = ""
        self.hex = 0

    def copy(self) -> JsonPrefix:
        """An independent copy of this state."""
        other = JsonPrefix(self.root)
        other.stack = list(self.stack)
        other.mode, other.key, other.number = self.mode, self.key, self.number
        other.literal, other.hex, other.blank = self.literal, self.hex, self.blank
        return other

    def signature(self) -> tuple[object, ...]:
        """Everything that decides which texts may follow (equal states, equal answers)."""
        return (
            self.root,
            tuple(self.stack),
            self.mode,
            self.key,
            self.number,
            self.literal,
            self.hex,
            self.blank,
        )

    @property
    def complete(self) -> bool:
        """The text so far is one whole JSON value."""
        return self.mode == "done" or (
            not self.stack and self.mode == "number" and self.number in NUMBER_END
        )

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False (and an undefined state) if it breaks the syntax."""
        return all(self._char(ch) for ch in text)

    def forced(self) -> str:
        """The text every valid continuation starts with: the rest of a literal
        (``rue`` after ``t``), else "" (JSON leaves whitespace and values free)."""
        return self.literal if self.mode == "literal" else ""

    def _after(self) -> str:
        return "after" if self.stack else "done"

    def _char(self, ch: str) -> bool:
        mode = self.mode
        if mode in ("string", "escape", "unicode"):
            return self._string(ch)
        if mode == "literal":
            if not self.literal.startswith(ch):
                return False
            self.literal = self.literal[1:]
            self.mode = self.mode if self.literal else self._after()
            return True
        if mode == "number":
            nxt = _number(self.number, ch)
            if nxt is not None:
                self.number = nxt
                return True
            if self.number not in NUMBER_END:
                return False
            self.mode = self._after()
            return self._char(ch)
        if ch in WHITESPACE:
            self.blank += 1
            return self.blank <= MAX_BLANK
        self.blank = 0
        if mode in ("value", "value_or_close"):
            if mode == "value_or_close" and ch == "]":
                return self._close("[")
            return self._start_value(ch)
        if mode in ("key", "key_or_close"):
            if mode == "key_or_close" and ch == "}":
                return self._close("{")
            self.mode, self.key = "string", True
            return ch == '"'
        if mode == "colon":
            self.mode = "value"
            return ch == ":"
        if mode == "after":
            if ch == ",":
                self.mode = "key" if self.stack[-1] == "{" else "value"
                return True
            return ch in "]}" and self._close("{" if ch == "}" else "[")
        return False  # done: only whitespace may follow

    def _string(self, ch: str) -> bool:
        if self.mode == "escape":
            if ch == "u":
                self.mode, self.hex = "unicode", 4
                return True
            self.mode = "string"
            return ch in '"\\/bfnrt'
        if self.mode == "unicode":
            self.hex -= 1
            self.mode = "unicode" if self.hex else "string"
            return ch in HEX
        if ch == '"':
            self.mode = "colon" if self.key else self._after()
            self.key = False
        elif ch == "\\":
            self.mode = "escape"
        return ch >= " "

    def _start_value(self, ch: str) -> bool:
        if self.root and not self.stack and ch != self.root:
            return False
        if ch in "{[":
            self.stack.append(ch)
            self.mode = "key_or_close" if ch == "{" else "value_or_close"
        elif ch == '"':
            self.mode, self.key = "string", False
        elif ch in LITERALS:
            self.mode, self.literal = "literal", LITERALS[ch]
        elif ch == "-" or ch in DIGITS:
            self.mode, self.number = "number", _number("start", ch) or ""
        else:
            return False
        return True

    def _close(self, kind: str) -> bool:
        if not self.stack or self.stack[-1] != kind:
            return False
        self.stack.pop()
        self.mode = self._after()
        return True


class _Node:
    """A vocabulary trie node: children by character, and small subtrees kept flat."""

    __slots__ = ("children", "flat", "ids", "plain")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.ids: list[int] = []  # tokens whose text ends here
        self.flat: list[tuple[int, str]] = []  # (id, rest of text): small subtrees
        self.plain: list[int] | None = None  # every id below, if all its text is plain


def _is_plain(text: str) -> bool:
    """Characters that leave a JSON string state unchanged."""
    return all(ch >= " " and ch not in '"\\' for ch in text)


def _build(items: list[tuple[int, str]], leaf: int = 8) -> _Node:
    node = _Node()
    if len(items) <= leaf:
        node.ids = [i for i, t in items if not t]
        node.flat = [(i, t) for i, t in items if t]
    else:
        groups: dict[str, list[tuple[int, str]]] = {}
        for i, t in items:
            if t:
                groups.setdefault(t[0], []).append((i, t[1:]))
            else:
                node.ids.append(i)
        node.children = {ch: _build(group, leaf) for ch, group in groups.items()}
    if all(_is_plain(t) for _, t in items):
        node.plain = [i for i, _ in items]
    return node


class JsonTokens:
    """The tokens allowed after a JSON prefix, per state, cached (bounded, LRU).

    The vocabulary is a character trie walked with the state, so a character that breaks
    the syntax prunes every token below it, and inside a string every subtree of plain
    characters is taken whole.

    Args:
        texts: the text of every token id (empty for special tokens: never allowed).
        eos: the end-of-sequence id, allowed once the value is complete.
        states: how many states' answers to keep.
    """

    def __init__(self, texts: Sequence[str], eos: int | None, states: int = 512) -> None:
        self.root = _build([(i, t) for i, t in enumerate(texts) if t])
        self.root.ids = []  # the empty text is never a token
        self.eos = eos
        self.states = states
        self.cache: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()

    def allowed(self, state: Prefix) -> np.ndarray:
        """Token ids whose text keeps ``state`` a valid JSON prefix (ascending)."""
        key = state.signature()
        ids = self.cache.get(key)
        if ids is None:
            found: list[int] = []
            _walk(self.root, state, found)
            if state.complete and self.eos is not None:
                found.append(self.eos)
            ids = np.array(sorted(found), np.int64)
            self.cache[key] = ids
            if len(self.cache) > self.states:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(key)
        return ids


def _walk(node: _Node, state: Prefix, found: list[int]) -> None:
    """Collect the ids below ``node`` whose remaining text ``state`` accepts."""
    if state.mode == "string" and node.plain is not None:
        found.extend(node.plain)
        return
    found.extend(node.ids)
    found.extend(i for i, rest in node.flat if state.copy().feed(rest))
    for ch, child in node.children.items():
        after = state.copy()
        if after.feed(ch):
            _walk(child, after, found)


def pick_json_token(
    state: Prefix,
    logits: np.ndarray,
    config: GenerationConfig,
    rng: np.random.Generator,
    tokens: JsonTokens,
) -> int:
    """Sample a token that keeps the output a valid JSON prefix (``logits [V]``).

    Greedy takes the best allowed token (the lowest id among equals); sampling samples
    among the allowed ones. With none allowed it samples freely (the output is then
    reported invalid).
    """
    allowed = tokens.allowed(state)
    allowed = allowed[allowed < logits.shape[0]]
    if not allowed.size:
        return sample(logits, config, rng)
    if config.temperature == 0:
        return int(allowed[int(np.argmax(logits[allowed]))])
    masked = np.full_like(logits, -np.inf)
    masked[allowed] = logits[allowed]
    return sample(masked, config, rng)
