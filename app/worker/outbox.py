"""Outputs that wait until the state behind them is durable.

A decision or consent event is published only after the table writes that
produced it have been acknowledged by the brokers, and its input record is
acknowledged to Faust only after that. So after any crash, a published
decision is always found again in the `decisions` table, and a redelivered
request is answered with it instead of a new, possibly different, one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from faust.types import AppT, EventT, TopicT


@dataclass
class Outbox:
    """Collects (topic, key, value) triples per input event, then publishes."""

    app: AppT
    max_pending: int = 1000
    # Each publish waits for one flush: letting outputs gather this long
    # turns many small produce requests into a few large ones.
    max_delay: float = 0.02
    _entries: list[tuple[EventT, list[tuple[TopicT, str, bytes]]]] = field(
        default_factory=list
    )
    _size: int = 0
    _oldest: float = 0.0

    def __len__(self) -> int:
        return self._size

    @property
    def due(self) -> bool:
        """Full, or holding outputs longer than `max_delay`."""
        if not self._size:
            return False
        waited = time.monotonic() - self._oldest
        return self._size >= self.max_pending or waited >= self.max_delay

    def add(self, event: EventT, *outputs: tuple[TopicT, str, bytes]) -> None:
        if not self._entries:
            self._oldest = time.monotonic()
        self._entries.append((event, list(outputs)))
        self._size += 1

    async def publish(self) -> None:
        """Make the table writes durable, publish the outputs, ack the inputs."""
        if not self._entries:
            return
        entries, self._entries, self._size = self._entries, [], 0
        # Waits for every buffered changelog write to be acknowledged.
        await self.app.producer.flush()
        for event, outputs in entries:
            for topic, key, value in outputs:
                # Queued in the producer buffer; Faust flushes it before it
                # commits the offsets acknowledged here.
                topic.send_soon(key=key, value=value)
            event.ack()
