"""The outbox: outputs wait for their state, inputs wait for their outputs."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.worker.delivery import Delivered
from app.worker.outbox import Outbox


@dataclass
class Journal:
    """What happened, in order, across the fakes below."""

    entries: list[str] = field(default_factory=list)


@dataclass
class FakeProducer:
    """Notes each record; delivers it at once unless told to hold them."""

    journal: Journal
    hold: bool = False
    held: list[asyncio.Future[Delivered]] = field(default_factory=list)

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
    ) -> asyncio.Future[Delivered]:
        self.journal.entries.append(f"send {topic} {(key or b'').decode()}")
        written: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.held.append(written)
        else:
            written.set_result(Delivered(topic, 0, len(self.journal.entries)))
        return written


@dataclass
class FakeEvent:
    name: str
    journal: Journal
    acked: bool = False

    def ack(self) -> None:
        self.acked = True
        self.journal.entries.append(f"ack {self.name}")


@dataclass
class FakeTable:
    unconfirmed: list[asyncio.Future[Any]] = field(default_factory=list)

    def write(self) -> asyncio.Future[Any]:
        written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.unconfirmed.append(written)
        return written

    def take_unconfirmed(self) -> list[asyncio.Future[Any]]:
        taken, self.unconfirmed = self.unconfirmed, []
        return taken


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def _outbox(table: FakeTable, producer: FakeProducer, **options: Any) -> Outbox:
    return Outbox(producer, tables=[table], **options)  # type: ignore[list-item]


@in_loop
async def test_outputs_wait_for_the_writes_and_acks_wait_for_the_outputs() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table, FakeProducer(journal))
    write = table.write()
    first, plain = FakeEvent("first", journal), FakeEvent("plain", journal)
    outbox.add(first, ("decisions", "+14155550100", b"{}"))  # type: ignore[arg-type]
    outbox.add(plain)  # type: ignore[arg-type]

    publishing = asyncio.create_task(outbox.publish())
    await asyncio.sleep(0.01)
    assert journal.entries == []  # the write is not acknowledged yet

    write.set_result(None)
    await publishing
    await asyncio.sleep(0)  # the delivery report's callbacks
    assert journal.entries == [
        "send decisions +14155550100",
        "ack first",
        "ack plain",
    ]
    assert len(outbox) == 0


@in_loop
async def test_a_refused_write_publishes_and_acknowledges_nothing() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table, FakeProducer(journal))
    table.write().set_exception(RuntimeError("not enough replicas"))
    event = FakeEvent("request", journal)
    outbox.add(event, ("decisions", "+1", b"{}"))  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="not enough replicas"):
        await outbox.publish()
    assert journal.entries == []
    assert not event.acked


@in_loop
async def test_a_batch_waits_only_for_its_own_writes() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table, FakeProducer(journal))
    table.write().set_result(None)
    outbox.add(FakeEvent("early", journal))  # type: ignore[arg-type]
    await outbox.publish()

    later = table.write()  # made after the first batch left
    outbox.add(FakeEvent("late", journal))  # type: ignore[arg-type]
    publishing = asyncio.create_task(outbox.publish())
    await asyncio.sleep(0.01)
    assert journal.entries == ["ack early"]
    later.set_result(None)
    await publishing
    assert journal.entries == ["ack early", "ack late"]


@in_loop
async def test_the_agent_waits_for_room_when_the_outbox_is_full() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table, FakeProducer(journal), max_pending=2)
    for name in ("a", "b"):
        outbox.add(FakeEvent(name, journal))  # type: ignore[arg-type]

    waiting = asyncio.create_task(outbox.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiting.done()

    await outbox.publish()
    await asyncio.wait_for(waiting, 1)
    assert journal.entries == ["ack a", "ack b"]


@in_loop
async def test_the_publisher_sends_batches_in_the_order_they_were_filled() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table, FakeProducer(journal))
    topic = "approved"
    publisher = asyncio.create_task(outbox.run())
    try:
        for n in range(5):
            table.write().set_result(None)
            outbox.add(FakeEvent(str(n), journal), (topic, str(n), b"{}"))  # type: ignore[arg-type]
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
    finally:
        publisher.cancel()
    sends = [entry for entry in journal.entries if entry.startswith("send")]
    assert sends == [f"send approved {n}" for n in range(5)]
    assert len(outbox) == 0


@in_loop
async def test_an_input_is_acknowledged_only_when_its_outputs_are_delivered() -> None:
    journal, table = Journal(), FakeTable()
    producer = FakeProducer(journal, hold=True)
    outbox = _outbox(table, producer, max_pending=2)
    event, plain = FakeEvent("request", journal), FakeEvent("plain", journal)
    outbox.add(event, ("approved", "+1", b"{}"), ("events", "+1", b"{}"))  # type: ignore[arg-type]
    outbox.add(plain)  # type: ignore[arg-type]
    await outbox.publish()

    assert journal.entries == ["send approved +1", "send events +1"]
    # Nothing is acknowledged past an input whose outputs are in flight,
    # and unacknowledged inputs count against the room.
    assert not event.acked and not plain.acked
    assert outbox.full
    producer.held[0].set_result(Delivered("approved", 0, 0))
    await asyncio.sleep(0)
    assert not event.acked
    producer.held[1].set_result(Delivered("events", 0, 0))
    await asyncio.sleep(0)
    assert event.acked and plain.acked
    assert not outbox.full
    await asyncio.wait_for(outbox.delivered(), 1)


@in_loop
async def test_a_refused_output_stops_the_publisher_and_its_input_stays_unacked() -> (
    None
):
    journal, table = Journal(), FakeTable()
    producer = FakeProducer(journal, hold=True)
    outbox = _outbox(table, producer)
    event = FakeEvent("request", journal)
    publisher = asyncio.create_task(outbox.run())
    outbox.add(event, ("approved", "+1", b"{}"))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    producer.held[0].set_exception(RuntimeError("record too large"))

    with pytest.raises(RuntimeError, match="record too large"):
        await asyncio.wait_for(publisher, 1)
    assert not event.acked
