"""English for the synthetic captions: an article before a phrase, a list joined with "and"."""

from __future__ import annotations

from collections.abc import Sequence


def article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
