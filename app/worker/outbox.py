"""Outputs that wait until the state behind them is durable.

A decision or consent event is published only after the changelog writes
that produced it have been acknowledged by the brokers, and its input record
is acknowledged to Faust only after that. So after any crash, a published
decision is always found again in the `decisions` table, and a redelivered
request is answered with it instead of a new, possibly different, one.

Publishing runs beside the stream, not inside it: while one batch waits for
its changelog acknowledgements, the agent goes on deciding the next. The
tables report the future of every changelog record they send
(`ConfirmedTable`), so a batch waits for its own writes and nothing else.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import AppT, EventT, TopicT
from faust.types.tuples import FutureMessage

Output = tuple[TopicT, str, bytes]


class ConfirmedTable(faust.Table):  # type: ignore[misc]
    """A Faust table that keeps the futures of its unconfirmed changelog writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unconfirmed: list[FutureMessage] = []

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        written = super().send_changelog(*args, **kwargs)
        self.unconfirmed.append(written)
        return written

    def take_unconfirmed(self) -> list[FutureMessage]:
        taken, self.unconfirmed = self.unconfirmed, []
        return taken


@dataclass
class Outbox:
    """Collects the outputs of each input event; publishes them in batches.

    Batches leave in the order they were filled, one at a time, so the
    outputs for one subscriber keep their order.
    """

    app: AppT
    tables: list[ConfirmedTable]
    # Beyond this many waiting events the agent pauses until a batch leaves.
    max_pending: int = 5000
    _entries: list[tuple[EventT, tuple[Output, ...]]] = field(default_factory=list)
    _filled: asyncio.Event = field(default_factory=asyncio.Event)
    _published: asyncio.Event = field(default_factory=asyncio.Event)
    _one_at_a_time: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, event: EventT, *outputs: Output) -> None:
        self._entries.append((event, outputs))
        self._filled.set()

    @property
    def full(self) -> bool:
        return len(self._entries) >= self.max_pending

    async def wait_for_room(self) -> None:
        """Back-pressure: return once fewer than `max_pending` events wait."""
        while len(self._entries) >= self.max_pending:
            self._published.clear()
            await self._published.wait()

    async def run(self) -> None:
        """Publish whatever has gathered, as soon as the last batch is out."""
        while True:
            await self._filled.wait()
            await self.publish()

    async def publish(self) -> None:
        """Wait for the state writes of what is pending, publish, ack the inputs."""
        async with self._one_at_a_time:
            # Taken together, with no await in between: every write made for
            # these entries was sent before they were added.
            entries, self._entries = self._entries, []
            self._filled.clear()
            writes = [w for table in self.tables for w in table.take_unconfirmed()]
            if writes:
                # Raises if the brokers refused a write: the entries stay
                # unacknowledged and are processed again after a restart.
                await asyncio.gather(*writes)
            for event, outputs in entries:
                for topic, key, value in outputs:
                    # Handed to the producer now; Faust flushes the producer
                    # before it commits the offsets acknowledged here.
                    await topic.send(key=key, value=value)
                event.ack()
            self._published.set()
