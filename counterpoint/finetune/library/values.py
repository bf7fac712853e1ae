"""Value samplers: names, cities, numbers, dates, codes and lists the questions are filled with.

A sampler takes a ``random.Random`` and returns one value. :data:`SHARED` maps common parameter
names to samplers; a library entry overrides or adds its own with ``values=``. Values vary widely
so that a model trained on the traces learns to copy them from the question.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from counterpoint.finetune.library._base import Sampler

__all__ = [
    "CITIES",
    "COUNTRIES",
    "CURRENCIES",
    "FIRST_NAMES",
    "LANGUAGES",
    "LAST_NAMES",
    "SHARED",
    "date",
    "email",
    "floats",
    "full_name",
    "ints",
    "listof",
    "pick",
    "time_of_day",
]

CITIES = (
    "Paris",
    "Lisbon",
    "Nairobi",
    "Osaka",
    "Toronto",
    "Lima",
    "Hanoi",
    "Oslo",
    "Cairo",
    "Quito",
    "Seville",
    "Krakow",
    "Austin",
    "Perth",
    "Dakar",
    "Tbilisi",
    "Porto",
    "Reykjavik",
    "Santiago",
    "Bergen",
    "Valencia",
    "Calgary",
    "Accra",
    "Busan",
    "Lyon",
    "Tallinn",
    "Cusco",
    "Mumbai",
    "Hobart",
    "Zagreb",
    "Montreal",
    "Kyoto",
    "Marrakesh",
    "Ghent",
    "Denver",
    "Chengdu",
    "Bogota",
    "Tunis",
    "Gdansk",
    "Salvador",
    "Auckland",
    "Riga",
    "Havana",
    "Bilbao",
    "Ljubljana",
    "Windhoek",
)
COUNTRIES = (
    "France",
    "Portugal",
    "Kenya",
    "Japan",
    "Canada",
    "Peru",
    "Vietnam",
    "Norway",
    "Egypt",
    "Ecuador",
    "Spain",
    "Poland",
    "Chile",
    "Senegal",
    "Georgia",
    "Iceland",
    "Ghana",
    "India",
    "Croatia",
    "Morocco",
    "Belgium",
    "Colombia",
    "Tunisia",
    "Brazil",
    "Latvia",
    "Namibia",
    "Estonia",
    "Slovenia",
    "Uruguay",
    "Mongolia",
)
FIRST_NAMES = (
    "Ana",
    "Bruno",
    "Chen",
    "Dalia",
    "Emeka",
    "Freya",
    "Goran",
    "Hana",
    "Ivan",
    "Jun",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Ines",
    "Tomas",
    "Aiko",
    "Luca",
    "Maya",
    "Noor",
)
LAST_NAMES = (
    "Silva",
    "Okafor",
    "Novak",
    "Tanaka",
    "Haddad",
    "Larsen",
    "Moreau",
    "Kowalski",
    "Mensah",
    "Ibrahim",
    "Costa",
    "Petrov",
    "Nguyen",
    "Garcia",
    "Fischer",
    "Rossi",
    "Kim",
    "Sato",
    "Ortiz",
    "Dubois",
    "Eriksen",
    "Banda",
    "Varga",
    "Quispe",
    "Horvat",
)
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "NOK", "INR", "BRL", "MXN")
LANGUAGES = (
    "French",
    "Spanish",
    "German",
    "Japanese",
    "Portuguese",
    "Italian",
    "Korean",
    "Dutch",
    "Swahili",
    "Polish",
    "Turkish",
    "Greek",
)
_WORDS = (
    "amber",
    "birch",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "granite",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lumen",
    "maple",
    "nimbus",
    "onyx",
    "pebble",
    "quartz",
    "raven",
    "saffron",
    "tundra",
)


def pick(*options: Any) -> Sampler:
    """One of ``options``."""
    choices = tuple(options)
    return lambda rng: choices[rng.randrange(len(choices))]


def ints(lo: int, hi: int) -> Sampler:
    """An integer in ``[lo, hi]``."""
    return lambda rng: rng.randint(lo, hi)


def floats(lo: float, hi: float, digits: int = 2) -> Sampler:
    """A float in ``[lo, hi]`` rounded to ``digits`` (never a whole number, so it reads as one)."""

    def draw(rng: random.Random) -> float:
        value = round(rng.uniform(lo, hi), digits)
        if value == int(value):
            value = round(value + 10**-digits * rng.randint(1, 9), digits)
        return value

    return draw


def listof(inner: Sampler | Sequence[Any], lo: int = 2, hi: int = 4) -> Sampler:
    """A list of ``lo``-``hi`` distinct values."""

    def draw(rng: random.Random) -> list[Any]:
        k = rng.randint(lo, hi)
        if not callable(inner):
            return rng.sample(list(inner), min(k, len(inner)))
        out: list[Any] = []
        for _ in range(k * 4):
            value = inner(rng)
            if value not in out:
                out.append(value)
            if len(out) == k:
                break
        return out

    return draw


def date(rng: random.Random) -> str:
    """An ISO date in 2026 or 2027."""
    return f"{rng.choice((2026, 2027))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def time_of_day(rng: random.Random) -> str:
    """``HH:MM`` on a quarter hour."""
    return f"{rng.randint(7, 21):02d}:{rng.choice((0, 15, 30, 45)):02d}"


def full_name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST_NAMES).lower(), rng.choice(LAST_NAMES).lower()
    return f"{first}.{last}@{rng.choice(('example.com', 'mail.test', 'corp.example'))}"


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS)


def _filename(rng: random.Random) -> str:
    ext = rng.choice(("txt", "csv", "md", "json", "log", "pdf"))
    return f"{rng.choice(_WORDS)}_{rng.randint(1, 99)}.{ext}"


def _path(rng: random.Random) -> str:
    folder = rng.choice(("home/docs", "srv/data", "tmp", "var/reports", "projects"))
    return f"/{folder}/{_filename(rng)}"


SHARED: dict[str, Sampler] = {
    "city": pick(*CITIES),
    "origin": pick(*CITIES),
    "destination": pick(*CITIES),
    "country": pick(*COUNTRIES),
    "date": date,
    "start_date": date,
    "end_date": date,
    "check_in": date,
    "check_out": date,
    "time": time_of_day,
    "name": full_name,
    "person": full_name,
    "passenger": full_name,
    "guest_name": full_name,
    "recipient": full_name,
    "contact": full_name,
    "email": email,
    "currency": pick(*CURRENCIES),
    "from_currency": pick(*CURRENCIES),
    "to_currency": pick(*CURRENCIES),
    "amount": floats(5, 5000, 2),
    "language": pick(*LANGUAGES),
    "source_language": pick(*LANGUAGES),
    "target_language": pick(*LANGUAGES),
    "days": ints(2, 10),
    "limit": ints(2, 8),
    "year": ints(1990, 2025),
    "filename": _filename,
    "path": _path,
    "word": _word,
    "title": lambda rng: (
        f"{rng.choice(_WORDS).capitalize()} "
        f"{rng.choice(('review', 'sync', 'planning', 'retro', 'kickoff'))}"
    ),
}
