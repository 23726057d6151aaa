"""Date/time normalization: an expression plus a reference time -> ISO 8601 (minutes).

Ground truth comes from ``dateparser`` (relative to the stated reference time). The
generator also knows what each expression means; examples where the two disagree
(dateparser reads a few phrasings differently) are dropped, so every label is checked
twice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from tinyllm.suite.splits import draw_splits, split_sizes
from tinyllm.tasks import Example

DEFAULT_SIZES = {"train": 400, "validation": 100, "test": 200}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ISO = "%Y-%m-%dT%H:%M"
Phrase = tuple[str, datetime]


def _h12(hour: int) -> str:
    return f"{hour % 12 or 12}{'am' if hour < 12 else 'pm'}"


def _absolute(base: datetime, rng: random.Random) -> Phrase:
    when = base + timedelta(days=rng.randint(-400, 400))
    when = when.replace(hour=rng.randrange(24), minute=rng.choice((0, 15, 30, 45, 5, 50)))
    form = rng.randrange(3)
    if form == 0:
        ampm = "am" if when.hour < 12 else "pm"
        text = f"{when:%B} {when.day}, {when.year} at {when.hour % 12 or 12}:{when:%M} {ampm}"
    elif form == 1:
        text = f"{when.day} {when:%B} {when.year} {when:%H:%M}"
    else:
        text = f"{when:%Y-%m-%d %H:%M}"
    return text, when


def _offset(base: datetime, rng: random.Random) -> Phrase:
    unit, limit = rng.choice((("day", 20), ("week", 6), ("hour", 30), ("minute", 90)))
    k = rng.randint(2, limit)
    delta = timedelta(**{f"{unit}s": k})
    if rng.random() < 0.5:
        return f"in {k} {unit}s", base + delta
    return f"{k} {unit}s ago", base - delta


def _day_at(base: datetime, rng: random.Random) -> Phrase:
    words = (("tomorrow", 1), ("yesterday", -1), ("today", 0))
    word, days = rng.choice(words)
    hour = rng.randrange(6, 23)
    when = (base + timedelta(days=days)).replace(hour=hour, minute=0)
    return f"{word} at {_h12(hour)}", when


def _weekday(base: datetime, rng: random.Random) -> Phrase:
    target = rng.randrange(7)
    ahead = (target - base.weekday()) % 7 or 7
    hour, minute = rng.randrange(7, 22), rng.choice((0, 30))
    when = (base + timedelta(days=ahead)).replace(hour=hour, minute=minute)
    if rng.random() < 0.5:
        return f"next {WEEKDAYS[target].lower()} at {_h12(hour)}", when.replace(minute=0)
    return f"{WEEKDAYS[target]} {hour:02d}:{minute:02d}", when


KINDS: tuple[Callable[[datetime, random.Random], Phrase], ...] = (
    _absolute,
    _offset,
    _day_at,
    _weekday,
)


def parse(text: str, base: datetime) -> datetime | None:
    """dateparser's reading of ``text`` relative to ``base`` (future preferred)."""
    import dateparser

    settings = {
        "RELATIVE_BASE": base,
        "PREFER_DATES_FROM": "future",
        "RETURN_AS_TIMEZONE_AWARE": False,
    }
    return dateparser.parse(text, settings=settings)


def _example(rng: random.Random) -> Example | None:
    """One labelled expression, or None where dateparser and the generator disagree."""
    base = datetime(2024, 1, 1) + timedelta(days=rng.randrange(1000))
    base = base.replace(hour=rng.randrange(24), minute=rng.randrange(0, 60, 5))
    text, expected = rng.choice(KINDS)(base, rng)
    prompt = f"Reference time: {base:%Y-%m-%d %H:%M} ({base:%A}). Expression: {text}"
    parsed = parse(text, base)
    if parsed is None or parsed.strftime(ISO) != expected.strftime(ISO):
        return None
    return Example(prompt, parsed.strftime(ISO), {"expression": text})


def build(sizes: dict[str, int], seed: int, downloads: Path) -> dict[str, list[Example]]:
    """Splits of distinct (reference time, expression) inputs."""
    rng = random.Random(seed)
    return draw_splits(split_sizes(sizes, DEFAULT_SIZES), lambda: _example(rng))
