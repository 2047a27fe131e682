"""Outputs that wait until the state behind them is durable.

A decision or consent event is published only after the changelog writes
that produced it have been acknowledged by the brokers, and its input record
is acknowledged to Faust only once its outputs have been acknowledged too.
So after any crash, a published decision is always found again in the
`decisions` table, and a redelivered request is answered with it instead of
a new, possibly different, one. Both kinds of write go through the
`DeliveryProducer` (delivery.py), not through Faust's producer.

Publishing runs beside the stream, not inside it: while one batch waits for
its changelog acknowledgements, the agent goes on deciding the next. The
tables report the future of every changelog record they send
(`ConfirmedTable`), so a batch waits for its own writes and nothing else.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import faust
from faust.types import TP, EventT
from faust.types.codecs import CodecArg

from app.worker.delivery import Delivered
from app.worker.partitioning import partition_for

# An output record: topic name, key (the subscriber), value.
Output = tuple[str, str, bytes]


class Producing(Protocol):
    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
    ) -> asyncio.Future[Delivered]: ...


class ConfirmedTable(faust.Table):  # type: ignore[misc]
    """A Faust table whose changelog writes leave through `producer`.

    It keeps the futures of the writes not yet confirmed, for the outbox,
    and records each confirmed offset in the local store, as Faust does for
    its own writes, so that a restart recovers only what the store lacks.
    """

    producer: Producing | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unconfirmed: list[asyncio.Future[Any]] = []

    def send_changelog(  # type: ignore[override]
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> Any:
        if self.producer is None:
            # Not wired to a worker (tools, tests): Faust's own path.
            sent = super().send_changelog(
                partition, key, value, key_serializer, value_serializer
            )
            self.unconfirmed.append(sent)
            return sent
        topic = self.changelog_topic
        key_bytes, _ = topic.prepare_key(key, key_serializer or self.key_serializer)
        value_bytes, _ = topic.prepare_value(
            value, value_serializer or self.value_serializer
        )
        if partition is None:
            # Outside an event (Faust's own choice then): by key, as Faust would.
            partitions = self.partitions or self.app.conf.topic_partitions
            partition = partition_for(bytes(key_bytes), partitions)
        written = self.producer.produce(
            topic.get_topic_name(), key_bytes, value_bytes, partition
        )
        written.add_done_callback(self._persist_offset)
        self.unconfirmed.append(written)
        # Faust's table reads the partition off what this returns.
        return _ChangelogSend(_Target(partition))

    def _persist_offset(self, written: asyncio.Future[Delivered]) -> None:
        if written.cancelled() or written.exception() is not None:
            return
        where = written.result()
        self.data.set_persisted_offset(TP(where.topic, where.partition), where.offset)

    def take_unconfirmed(self) -> list[asyncio.Future[Any]]:
        taken, self.unconfirmed = self.unconfirmed, []
        return taken


@dataclass(frozen=True, slots=True)
class _Target:
    partition: int


@dataclass(frozen=True, slots=True)
class _ChangelogSend:
    """The part of Faust's `FutureMessage` that its tables read: the partition."""

    message: _Target


@dataclass
class Outbox:
    """Collects the outputs of each input event; publishes them in batches.

    Batches leave in the order they were filled, one at a time, so the
    outputs for one subscriber keep their order.
    """

    producer: Producing
    tables: list[ConfirmedTable]
    # Beyond this many events waiting or unacknowledged, the agent pauses.
    max_pending: int = 5000
    _entries: list[tuple[EventT, tuple[Output, ...]]] = field(default_factory=list)
    _unacked: deque[_Unacked] = field(default_factory=deque)
    _failure: BaseException | None = None
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
        return len(self._entries) + len(self._unacked) >= self.max_pending

    async def wait_for_room(self) -> None:
        """Back-pressure: return once fewer than `max_pending` events wait."""
        while self.full:
            self._published.clear()
            await self._published.wait()

    async def run(self) -> None:
        """Publish whatever has gathered, as soon as the last batch is out.

        Raises when an output was refused: its input stays unacknowledged.
        """
        while True:
            await self._filled.wait()
            if self._failure is not None:
                raise self._failure
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
                unacked = _Unacked(event, len(outputs))
                self._unacked.append(unacked)
                for topic, key, value in outputs:
                    sent = self.producer.produce(topic, key.encode(), value)
                    sent.add_done_callback(functools.partial(self._settled, unacked))
            self._ack_delivered()

    async def delivered(self) -> None:
        """Return once every published output is delivered and its input acked.

        Raises if the brokers refused one: its input must not be committed.
        """
        while self._unacked and self._failure is None:
            self._published.clear()
            await self._published.wait()
        if self._failure is not None:
            raise self._failure

    def _settled(self, unacked: _Unacked, output: asyncio.Future[Delivered]) -> None:
        if output.cancelled() or output.exception() is not None:
            if self._failure is None:
                self._failure = output.exception() or asyncio.CancelledError()
                self._filled.set()  # wakes `run`, which raises it
            return
        unacked.waiting -= 1
        self._ack_delivered()

    def _ack_delivered(self) -> None:
        """Acknowledge, in the order they were added, inputs whose outputs are out.

        In that order, as when Faust's producer sent the outputs: Faust
        commits past acknowledged offsets, and does not always see a gap
        below them (an unacknowledged offset just at the committed one).
        """
        unacked = self._unacked
        while unacked and unacked[0].waiting == 0:
            unacked.popleft().event.ack()
        self._published.set()  # room for the agent, if it waits


@dataclass(slots=True)
class _Unacked:
    """An input record, and how many of its outputs the brokers have yet to take."""

    event: EventT
    waiting: int
