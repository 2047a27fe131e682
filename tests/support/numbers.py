"""Fresh phone numbers, so that tests sharing a worker never collide."""

from __future__ import annotations

import random

from app.rules.numbers import subscriber_number

_rng = random.Random()
_used: set[str] = set()


def fresh_number(prefix: str = "+1415", length: int = 12) -> str:
    """A valid, never before handed out number starting with `prefix`."""
    for _ in range(10_000):
        digits = "".join(_rng.choices("0123456789", k=length - len(prefix) - 1))
        candidate = f"{prefix}{_rng.choice('23456789')}{digits}"
        if candidate not in _used and subscriber_number(candidate) == candidate:
            _used.add(candidate)
            return candidate
    raise ValueError(f"no valid number of {length} characters starts with {prefix}")


def fresh_subscriber() -> str:
    return fresh_number("+1415")


def fresh_us_sender() -> str:
    return fresh_number("+1201")
