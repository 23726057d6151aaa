"""Drafts for speculative decoding: prompt lookup and forced text (plain data, no session).

Tasks whose answer copies its input (an extraction that quotes names and dates, a
rewrite that keeps most words) write long runs of tokens that already sit in the prompt.
:func:`draft` finds the latest earlier place where the row's last few tokens occur and
proposes the tokens that followed them there. A constrained row (a tool call, a JSON
literal) often faces text its constraint forces, such as
``{"name": "calculator", "arguments": {"expression": "``: :class:`Forcing` drafts that
text's tokens, so it is written in one step instead of one step a token. The decode loop
(:mod:`tinyllm.runtime.serving`) feeds the row's next token plus the draft in one run,
picks each next token from the logits exactly as a plain step would (constraints,
stops and limits included), and keeps the draft tokens only while they equal what it
picked: greedy outputs are those of plain decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tinyllm.errors import ConfigError
from tinyllm.runtime.constraints import JsonTokens, Prefix
from tinyllm.runtime.live import Live

FORCED_TEXTS = 256  # forced texts whose tokens are remembered (a task has a handful)


@dataclass(frozen=True)
class SpeculationOptions:
    """How the decode loop speculates.

    Args:
        draft_tokens: most tokens proposed per step; 0 (the default) turns speculation off.
            Off unless asked: on int4 engines a verify run's several-row MatMulNBits can
            pick other greedy tokens than single steps do (docs/runtime.md).
        max_ngram: the longest run of last tokens looked up (longer runs are tried first).
        min_ngram: the shortest run that may propose a draft.
        max_rows: speculate only in steps where at most this many rows decode. ONNX
            Runtime's CPU attention takes several new tokens after past ones for one row at
            a time, so each draft is verified in its own run, while plain rows share one
            batched run; with many rows decoding, batching is worth more than drafts.
        forced: greedy constrained rows draft the text their constraint forces
            (:class:`Forcing`), whatever ``draft_tokens`` says.
    """

    draft_tokens: int = 0
    max_ngram: int = 3
    min_ngram: int = 1
    max_rows: int = 1
    forced: bool = False

    def __post_init__(self) -> None:
        if self.draft_tokens < 0:
            raise ConfigError(f"draft_tokens must be >= 0, got {self.draft_tokens}")
        if not 1 <= self.min_ngram <= self.max_ngram:
            raise ConfigError(
                f"need 1 <= min_ngram <= max_ngram, got {self.min_ngram} and {self.max_ngram}"
            )
        if self.max_rows < 1:
            raise ConfigError(f"max_rows must be >= 1, got {self.max_rows}")

    @property
    def on(self) -> bool:
        """Whether drafts are proposed at all."""
        return self.draft_tokens > 0


def draft(context: Sequence[int], options: SpeculationOptions, limit: int) -> list[int]:
    """Up to ``min(options.draft_tokens, limit)`` tokens that followed the latest earlier
    occurrence of the last ``n`` tokens of ``context`` (``n`` from ``max_ngram`` down to
    ``min_ngram``); empty when none occurs or ``limit`` < 1."""
    k = min(options.draft_tokens, limit)
    size = len(context)
    if k < 1:
        return []
    for n in range(min(options.max_ngram, size - 1), options.min_ngram - 1, -1):
        tail = list(context[size - n :])
        first = tail[0]
        # latest start i < size - n with context[i : i + n] == tail
        for i in range(size - n - 1, -1, -1):
            if context[i] == first and list(context[i : i + n]) == tail:
                return list(context[i + n : i + n + k])
    return []


@dataclass
class Forcing:
    """Drafts of the text a constraint forces: its tokens as the tokenizer writes them
    (the tokenization the model was trained on), each one allowed where it stands, then
    any token that is the only one allowed. The verify step still picks every token from
    the logits, so a model that splits the text otherwise only costs the rest of the draft.

    Args:
        encode: token ids of a text (no special tokens).
        text_of: the text of one token id.
        tokens: the allowed tokens per constraint state (the router's, built lazily).
    """

    encode: Callable[[str], list[int]]
    text_of: Callable[[int], str]
    tokens: Callable[[], JsonTokens]
    known: dict[str, list[int]] = field(default_factory=dict)

    def draft(self, state: Prefix, limit: int) -> list[int]:
        """At most ``limit`` tokens that ``state`` forces (``state`` is not changed)."""
        text = state.forced()
        ids = self.known.get(text)
        if ids is None:
            ids = self.encode(text) if text else []
            if len(self.known) >= FORCED_TEXTS:
                self.known.clear()
            self.known[text] = ids
        state, tokens = state.copy(), self.tokens()
        out: list[int] = []
        for token in ids:
            allowed = tokens.allowed(state)
            if len(out) >= limit or not _holds(allowed, token):
                return out
            if not state.feed(self.text_of(token)):
                return out
            out.append(token)
        while len(out) < limit and not state.complete:
            allowed = tokens.allowed(state)
            if len(allowed) != 1 or not state.feed(self.text_of(int(allowed[0]))):
                break
            out.append(int(allowed[0]))
        return out


def _holds(ids: np.ndarray, token: int) -> bool:
    """Whether the ascending ``ids`` hold ``token``."""
    at = int(np.searchsorted(ids, token))
    return at < len(ids) and int(ids[at]) == token


def drafts_for(
    lives: Sequence[Live],
    options: SpeculationOptions | None,
    max_seq_len: int,
    forcing: Forcing | None = None,
) -> dict[int, tuple[list[int], bool]]:
    """Drafts (by request id; with whether each is forced text) for the greedy rows
    decoding this step, in a step where at most ``options.max_rows`` rows decode: the text
    a row's constraint forces (``options.forced``), else a prompt lookup for rows whose
    config asks for it. ``options`` None: the engine cannot verify drafts."""
    if options is None or not (options.on or options.forced):
        return {}
    if not 0 < len(lives) <= options.max_rows:
        return {}
    drafts = {}
    for live in lives:
        config = live.route.config
        if config.temperature != 0 or live.done:
            continue
        # Room for the draft in the output budget (the verify run's last position gives one
        # more token) and in the context (the run writes 1 + len(draft) positions).
        room = min(config.max_new_tokens - len(live.tokens), max_seq_len - live.kv_len) - 1
        if options.forced and forcing is not None and live.json is not None:
            tokens = forcing.draft(live.json, room)
            if tokens:
                drafts[live.id] = (tokens, True)
                continue
        if options.on and config.speculate:
            tokens = draft([*live.route.prompt, *live.tokens], options, room)
            if tokens:
                drafts[live.id] = (tokens, False)
    return drafts


def verifies_exactly(flavour: str, precision: str) -> bool:
    """Whether a verify run picks the tokens single-token steps pick on this engine: not
    on the ``ort`` flavour's int4 and int8 weights, which run MatMulNBits at accuracy level
    4, whose several-row path rounds otherwise (measured on SmolLM2 int4)."""
    return not (flavour == "ort" and precision in ("int4", "int8"))


def check_exact(
    draft_tokens: int,
    flavour: str,
    precision: str,
    fast_forward: bool | None = None,
    float_dtype: str = "float32",
) -> bool:
    """Refuse speculation (``draft_tokens`` > 0) and forced-text drafts (``fast_forward``
    True) on engines where they change outputs. Returns ``fast_forward`` resolved: None is
    on for float32 engines that verify exactly, off elsewhere (float16 verify runs are not
    measured against single steps: on only when asked)."""
    exact = verifies_exactly(flavour, precision)
    if draft_tokens and not exact:
        raise ConfigError(
            f"speculative decoding would change this {precision} engine's outputs (its "
            "several-token verify runs round differently from single-token steps); load it "
            "with speculate=0, or speculate on an fp32 engine (docs/runtime.md)"
        )
    if fast_forward and not exact:
        raise ConfigError(
            f"fast_forward would change this {precision} engine's outputs (its several-token "
            "verify runs round differently from single-token steps); load it with "
            "fast_forward=False or None (docs/runtime.md)"
        )
    if fast_forward is None:
        return exact and float_dtype == "float32"
    return fast_forward


@dataclass
class SpeculationStats:
    """Counts of the loop's verify steps: drafted tokens and how many were kept."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    forced_steps: int = 0  # of ``steps``: those whose draft was forced text
    forced_drafted: int = 0
    forced_accepted: int = 0
    label_forwarded: int = 0  # label tokens the trie forced, written without a model run

    def as_dict(self) -> dict[str, float]:
        """Plain data, with the acceptance rate (accepted / drafted)."""
        rate = self.accepted / self.drafted if self.drafted else 0.0
        return {
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "emitted": self.emitted,
            "acceptance": round(rate, 4),
            "forced_steps": self.forced_steps,
            "forced_drafted": self.forced_drafted,
            "forced_accepted": self.forced_accepted,
            "label_forwarded": self.label_forwarded,
        }
