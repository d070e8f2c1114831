"""Small text helpers the readers' error messages share."""

from __future__ import annotations


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def shorten(text: str, limit: int = 60) -> str:
    """At most `limit` characters, with `...` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
