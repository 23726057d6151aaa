"""Prompt-lookup drafts for speculative decoding (plain data, no session).

Tasks whose answer copies its input (an extraction that quotes names and dates, a
rewrite that keeps most words) write long runs of tokens that already sit in the prompt.
:func:`draft` finds the latest earlier place where the row's last few tokens occur and
proposes the tokens that followed them there. The decode loop
(:mod:`tinyllm.runtime.serving`) feeds the row's next token plus the draft in one run,
picks each next token from the logits exactly as a plain step would (constraints,
stops and limits included), and keeps the draft tokens only while they equal what it
picked: greedy outputs are those of plain decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tinyllm.errors import ConfigError
from tinyllm.runtime.live import Live


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
    """

    draft_tokens: int = 0
    max_ngram: int = 3
    min_ngram: int = 1
    max_rows: int = 1

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


def drafts_for(
    lives: Sequence[Live], options: SpeculationOptions | None, max_seq_len: int
) -> dict[int, list[int]]:
    """Drafts (by request id) for the rows decoding this step that speculate: greedy rows
    whose config asks for it, in a step where at most ``options.max_rows`` rows decode.
    ``options`` None: the engine cannot verify drafts (nothing speculates)."""
    if options is None or not options.on or not 0 < len(lives) <= options.max_rows:
        return {}
    drafts = {}
    for live in lives:
        config = live.route.config
        if not config.speculate or config.temperature != 0 or live.done:
            continue
        # Room for the draft in the output budget (the verify run's last position gives one
        # more token) and in the context (the run writes 1 + len(draft) positions).
        room = min(config.max_new_tokens - len(live.tokens), max_seq_len - live.kv_len) - 1
        tokens = draft([*live.route.prompt, *live.tokens], options, room)
        if tokens:
            drafts[live.id] = tokens
    return drafts


def check_exact(draft_tokens: int, flavour: str, precision: str) -> None:
    """Refuse speculation on engines where it changes outputs: the ``ort`` flavour's int4 and
    int8 weights run MatMulNBits at accuracy level 4, whose several-row path (a verify run)
    picks other greedy tokens than single-token steps do (measured on SmolLM2 int4)."""
    if draft_tokens and flavour == "ort" and precision in ("int4", "int8"):
        raise ConfigError(
            f"speculative decoding would change this {precision} engine's outputs (its "
            "several-token verify runs round differently from single-token steps); load it "
            "with speculate=0, or speculate on an fp32 engine (docs/runtime.md)"
        )


@dataclass
class SpeculationStats:
    """Counts of the loop's verify steps: drafted tokens and how many were kept."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0

    def as_dict(self) -> dict[str, float]:
        """Plain data, with the acceptance rate (accepted / drafted)."""
        rate = self.accepted / self.drafted if self.drafted else 0.0
        return {
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "emitted": self.emitted,
            "acceptance": round(rate, 4),
        }
