"""Intent classification over 12 assistant intents (templated, paraphrase-rich, Faker slots)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from tinyllm.suite.splits import split_sizes
from tinyllm.tasks import Example

DEFAULT_SIZES = {"train": 4000, "validation": 300, "test": 400}
PREFIXES = (
    "",
    "",
    "",
    "please ",
    "hey, ",
    "can you ",
    "could you please ",
    "I'd like you to ",
    "quick one: ",
    "hi! ",
)
SUFFIXES = ("", "", "", " please", " thanks", " asap", "?", ", thank you", " now")
INTENTS: dict[str, tuple[str, ...]] = {
    "book_flight": (
        "book a flight from {city} to {city2} on {day}",
        "get me a plane ticket to {city2}",
        "I need to fly to {city2} {day}",
        "find flights to {city2} leaving {day}",
        "reserve a seat on the next flight to {city2}",
        "any cheap flights to {city2} {day}",
    ),
    "book_hotel": (
        "book a hotel in {city} for {n} nights",
        "find me a room in {city} {day}",
        "I need accommodation in {city}",
        "reserve a hotel near the center of {city}",
        "where can I stay in {city} {day}",
        "get a double room in {city} for {n} nights",
    ),
    "cancel_booking": (
        "cancel my reservation for {day}",
        "I want to cancel the booking in {city}",
        "please drop my hotel reservation",
        "call off the trip to {city2}",
        "I no longer need the flight {day}",
        "undo my booking number {num}",
    ),
    "check_weather": (
        "what's the weather in {city} {day}",
        "will it rain in {city} {day}",
        "how hot is it going to be {day}",
        "do I need an umbrella {day}",
        "forecast for {city} this weekend",
        "is it going to snow in {city}",
    ),
    "set_alarm": (
        "set an alarm for {time}",
        "wake me up at {time}",
        "alarm at {time} {day}",
        "I need to get up at {time}",
        "ring me at {time} tomorrow morning",
        "create an alarm for {time} on weekdays",
    ),
    "set_reminder": (
        "remind me to call {name} at {time}",
        "don't let me forget to {chore} {day}",
        "set a reminder to {chore} at {time}",
        "remember to email {name} {day}",
        "make a note to {chore} before {time}",
        "ping me {day} about {name}'s birthday",
    ),
    "play_music": (
        "play some {genre}",
        "put on {genre} music in the {room}",
        "I want to hear {genre}",
        "start my {genre} playlist",
        "play the latest album by {name}",
        "shuffle {genre} songs",
    ),
    "transfer_money": (
        "transfer {amount} to {name}",
        "send {amount} to my savings account",
        "move {amount} from checking to savings",
        "pay {name} {amount}",
        "wire {amount} to account {num}",
        "I owe {name} {amount}, send it",
    ),
    "check_balance": (
        "what's my account balance",
        "how much money do I have in checking",
        "show me my savings balance",
        "how much is left on my card",
        "check the balance of account {num}",
        "am I overdrawn",
    ),
    "order_food": (
        "order a {food} from the place near {street}",
        "I'm hungry, get me {food}",
        "deliver {food} to {street}",
        "order {n} {food}s for dinner",
        "can I get {food} delivered by {time}",
        "food order: {food}, extra large",
    ),
    "get_directions": (
        "how do I get to {street}",
        "directions to {city2} avoiding tolls",
        "navigate to {name}'s house",
        "what's the fastest route to {street}",
        "take me to the nearest gas station",
        "how far is {city2} from here",
    ),
    "translate_text": (
        "translate '{phrase}' into {language}",
        "how do you say '{phrase}' in {language}",
        "what is '{phrase}' in {language}",
        "{language} translation of '{phrase}'",
        "say '{phrase}' in {language} for me",
        "convert this to {language}: {phrase}",
    ),
}
GENRES = ("jazz", "rock", "classical", "hip hop", "lo-fi", "country", "techno", "blues")
FOODS = ("pizza", "burger", "burrito", "sushi roll", "pad thai", "salad", "curry", "kebab")
CHORES = (
    "buy milk",
    "water the plants",
    "pay rent",
    "pick up the kids",
    "renew my passport",
    "take out the trash",
    "book the dentist",
)
LANGUAGES = ("French", "Spanish", "German", "Japanese", "Italian", "Portuguese", "Dutch")
DAYS = ("today", "tomorrow", "on Friday", "next week", "this weekend", "on Monday", "tonight")
ROOMS = ("kitchen", "living room", "bedroom", "car", "office")


def _fill(template: str, fake: Any, rng: random.Random) -> str:
    values = {
        "city": fake.city(),
        "city2": fake.city(),
        "day": rng.choice(DAYS),
        "n": rng.randint(2, 9),
        "num": fake.bothify("#####"),
        # Not fake.time(): Faker draws it up to the current clock, so the data would
        # change from run to run.
        "time": f"{rng.randrange(24):02d}:{rng.randrange(60):02d}",
        "name": fake.first_name(),
        "chore": rng.choice(CHORES),
        "genre": rng.choice(GENRES),
        "room": rng.choice(ROOMS),
        "amount": f"${rng.randint(5, 900)}",
        "food": rng.choice(FOODS),
        "street": fake.street_name(),
        "language": rng.choice(LANGUAGES),
        "phrase": fake.sentence(nb_words=4).rstrip("."),
    }
    text = rng.choice(PREFIXES) + template.format(**values) + rng.choice(SUFFIXES)
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text


def build(sizes: dict[str, int], seed: int, downloads: Path) -> dict[str, list[Example]]:
    """Balanced splits (intents in rotation), no utterance shared between splits."""
    from faker import Faker

    n = split_sizes(sizes, DEFAULT_SIZES)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    labels = sorted(INTENTS)
    seen: set[str] = set()
    splits: dict[str, list[Example]] = {}
    for split in ("test", "validation", "train"):
        out: list[Example] = []
        while len(out) < n[split]:
            intent = labels[len(out) % len(labels)]
            text = _fill(rng.choice(INTENTS[intent]), fake, rng)
            if text not in seen:
                seen.add(text)
                out.append(Example(text, intent, {}))
        rng.shuffle(out)
        splits[split] = out
    return splits
