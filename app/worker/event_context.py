"""Judging a held record as if the stream had just delivered it."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from faust.streams import _current_event
from faust.types import EventT


@contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Make `event` Faust's current event while a held record is judged.

    Faust routes every table write to the changelog partition of the current
    event. A send held back for event-time alignment is judged after later
    records were delivered, so its own event must be current again, or its
    state would land in another partition's changelog and be lost on recovery.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
