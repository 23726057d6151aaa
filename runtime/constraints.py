"""Constrained decoding of JSON: keep the output a valid JSON prefix, token by token.

:class:`JsonPrefix` is a character-level JSON syntax machine (RFC 8259: objects, arrays,
strings with escapes, numbers, literals). :func:`pick_json_token` tries the candidates in
logit order and keeps only tokens whose text extends a valid prefix (end of sequence only
once the value is complete). It constrains syntax, not the schema: the router still
checks the schema afterwards and reports a mismatch.
"""

from __future__ import annotations

from collections.abc import Callable

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

    @property
    def complete(self) -> bool:
        """The text so far is one whole JSON value."""
        return self.mode == "done" or (
            not self.stack and self.mode == "number" and self.number in NUMBER_END
        )

    def feed(self, text: str) -> bool:
        """Advance over ``text``; False (and an undefined state) if it breaks the syntax."""
        return all(self._char(ch) for ch in text)

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


def pick_json_token(
    state: JsonPrefix,
    logits: np.ndarray,
    config: GenerationConfig,
    rng: np.random.Generator,
    token_text: Callable[[int], str],
    eos: int | None,
    candidates: int = 64,
) -> int:
    """Sample a token that keeps the output a valid JSON prefix (``logits [V]``).

    Greedy takes the best valid token; sampling samples among the valid ones of the
    ``candidates`` most likely. Falls back to the whole vocabulary in logit order.
    """

    def valid(token: int) -> bool:
        if token == eos:
            return state.complete
        text = token_text(token)
        return bool(text) and state.copy().feed(text)

    order = np.argsort(-logits, kind="stable")
    if config.temperature > 0:
        allowed = [int(t) for t in order[:candidates] if valid(int(t))]
        if allowed:
            masked = np.full_like(logits, -np.inf)
            masked[allowed] = logits[allowed]
            return sample(masked, config, rng)
    for token in order:
        if valid(int(token)):
            return int(token)
    return sample(logits, config, rng)  # nothing fits: the output is reported invalid
