"""Query rewriting (free text): a terse keyword query -> a well-formed request.

Both sides are generated from the same slots; the reference is one canonical phrasing per
intent, while the keyword queries vary (word order, dropped words, abbreviations).
Scored with ROUGE-L against the reference.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tinyllm.suite.splits import draw_splits, split_sizes
from tinyllm.tasks import Example

DEFAULT_SIZES = {"train": 300, "validation": 100, "test": 200}
WHEN = {
    "tomorrow": "tomorrow",
    "tmrw": "tomorrow",
    "today": "today",
    "tonight": "tonight",
    "this weekend": "this weekend",
    "next week": "next week",
    "fri": "on Friday",
}
CUISINES = ("italian", "thai", "vegan", "mexican", "sushi", "indian", "korean bbq", "pizza")
ITEMS = ("laptop", "running shoes", "coffee maker", "headphones", "backpack", "desk lamp")
DOMAINS: dict[str, tuple[tuple[str, ...], str]] = {
    "flight": (
        (
            "cheap flights {city} {when}",
            "flights to {city} {when} cheap",
            "{city} flight {when} low price",
            "cheapest flight {city} {when}",
        ),
        "Find the cheapest flights to {city} {when_full}.",
    ),
    "restaurant": (
        (
            "{cuisine} {city} open now",
            "{cuisine} near {city} now",
            "open {cuisine} place {city}",
            "{cuisine} restaurants {city} open",
        ),
        "Which {cuisine} restaurants in {city} are open right now?",
    ),
    "weather": (
        (
            "weather {city} {when}",
            "{city} forecast {when}",
            "{when} {city} weather",
            "rain {city} {when}?",
        ),
        "What is the weather forecast for {city} {when_full}?",
    ),
    "shopping": (
        (
            "{item} under {price}",
            "best {item} {price} max",
            "cheap {item} < {price}",
            "{item} budget {price}",
        ),
        "Show me the best {item} that cost less than {price}.",
    ),
    "hotel": (
        (
            "hotel {city} {when} {n} ppl",
            "{city} hotels {when} for {n}",
            "rooms {city} {when} {n} guests",
            "{n} person hotel {city} {when}",
        ),
        "Find a hotel in {city} for {n} people {when_full}.",
    ),
}


def _example(fake: Any, rng: random.Random) -> Example:
    domain = rng.choice(sorted(DOMAINS))
    queries, reference = DOMAINS[domain]
    when = rng.choice(sorted(WHEN))
    slots = {
        "city": fake.city(),
        "when": when,
        "when_full": WHEN[when],
        "cuisine": rng.choice(CUISINES),
        "item": rng.choice(ITEMS),
        "price": f"${rng.choice((50, 100, 150, 200, 300, 500))}",
        "n": rng.randint(2, 6),
    }
    query = rng.choice(queries).format(**slots)
    if rng.random() < 0.5:
        query = query.lower()
    return Example(query, reference.format(**slots), {"domain": domain})


def build(sizes: dict[str, int], seed: int, downloads: Path) -> dict[str, list[Example]]:
    """Splits with no query shared between them."""
    from faker import Faker

    n = split_sizes(sizes, DEFAULT_SIZES)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    return draw_splits(n, lambda: _example(fake, rng))
