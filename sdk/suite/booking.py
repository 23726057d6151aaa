"""Structured extraction: travel-booking requests -> JSON {city, date, guests}.

Requests are generated from templates with Faker (fixed seeds): the city comes from Faker's
locales, the date is written in one of many surface forms, the party size as a digit, a
word or a phrase. The target is canonical JSON with an ISO date.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from tinyllm.suite.splits import draw_splits, split_sizes
from tinyllm.tasks import Example

DEFAULT_SIZES = {"train": 1500, "validation": 200, "test": 300}
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_PT")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight")
TEMPLATES = (
    "Book a hotel in {city} on {date} for {party}.",
    "I need a room in {city} for {party}, checking in {date}.",
    "Can you reserve a table in {city} for {party} on {date}?",
    "We are {n_word} people travelling to {city}, arriving {date}. Please book something.",
    "Looking for a place to stay in {city} starting {date}, {party}.",
    "reserve {city} {date} {n} ppl",
    "Hi! Please book accommodation for {party} in {city}; we arrive on {date}.",
    "{date}: hotel in {city}, {party}.",
    "Could you find us a table for {n} in {city} on {date}? Thanks!",
    "Trip to {city} on {date} with {party}, need a booking.",
    "Need a reservation for {party} at a restaurant in {city}, {date}.",
    "Hey, sort out a hotel for me in {city} on {date}. It's {party}.",
)


def _date_text(d: date, rng: random.Random) -> str:
    day = d.day
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    forms = (
        f"{d:%B} {day}, {d.year}",
        f"{day} {d:%B} {d.year}",
        d.isoformat(),
        f"{d.month:02d}/{day:02d}/{d.year}",
        f"the {day}{suffix} of {d:%B} {d.year}",
        f"{d:%b} {day} {d.year}",
        f"{d:%A}, {d:%B} {day}{suffix} {d.year}",
    )
    return rng.choice(forms)


def _party(n: int, rng: random.Random) -> str:
    if n == 1:
        return rng.choice(("one person", "just me", "1 guest", "a single traveller"))
    if n == 2:
        return rng.choice(("two people", "2 guests", "a couple", "two adults", "2 people"))
    return rng.choice(
        (
            f"{n} guests",
            f"{NUMBER_WORDS[n - 1]} people",
            f"a party of {n}",
            f"{n} adults",
            f"{NUMBER_WORDS[n - 1]} guests",
        )
    )


def _example(fakers: list[Any], rng: random.Random) -> Example:
    city = rng.choice(fakers).city()
    when = date(2025, 1, 1) + timedelta(days=rng.randrange(730))
    n = rng.choice((1, 2, 2, 2, 3, 4, 4, 5, 6, 8))
    text = rng.choice(TEMPLATES).format(
        city=city, date=_date_text(when, rng), party=_party(n, rng), n=n, n_word=NUMBER_WORDS[n - 1]
    )
    target = {"city": city, "date": when.isoformat(), "guests": n}
    return Example(text, json.dumps(target, ensure_ascii=False), {})


def build(sizes: dict[str, int], seed: int, downloads: Path) -> dict[str, list[Example]]:
    """Splits of distinct requests (no input text shared between splits)."""
    from faker import Faker

    n = split_sizes(sizes, DEFAULT_SIZES)
    fakers = []
    for i, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed * 100 + i)
        fakers.append(fake)
    rng = random.Random(seed)
    return draw_splits(n, lambda: _example(fakers, rng))
