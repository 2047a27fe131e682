"""The outbox: outputs wait for their state, inputs wait for their outputs."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.worker.outbox import Outbox


@dataclass
class Journal:
    """What happened, in order, across the fakes below."""

    entries: list[str] = field(default_factory=list)


@dataclass
class FakeTopic:
    name: str
    journal: Journal

    async def send(self, *, key: str, value: bytes) -> None:
        self.journal.entries.append(f"send {self.name} {key}")


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


def _outbox(table: FakeTable, **options: Any) -> Outbox:
    return Outbox(app=None, tables=[table], **options)  # type: ignore[arg-type, list-item]


@in_loop
async def test_outputs_wait_for_the_writes_and_acks_wait_for_the_outputs() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table)
    decisions = FakeTopic("decisions", journal)
    write = table.write()
    first, plain = FakeEvent("first", journal), FakeEvent("plain", journal)
    outbox.add(first, (decisions, "+14155550100", b"{}"))  # type: ignore[arg-type]
    outbox.add(plain)  # type: ignore[arg-type]

    publishing = asyncio.create_task(outbox.publish())
    await asyncio.sleep(0.01)
    assert journal.entries == []  # the write is not acknowledged yet

    write.set_result(None)
    await publishing
    assert journal.entries == [
        "send decisions +14155550100",
        "ack first",
        "ack plain",
    ]
    assert len(outbox) == 0


@in_loop
async def test_a_refused_write_publishes_and_acknowledges_nothing() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table)
    table.write().set_exception(RuntimeError("not enough replicas"))
    event = FakeEvent("request", journal)
    outbox.add(event, (FakeTopic("decisions", journal), "+1", b"{}"))  # type: ignore[arg-type]

    with pytest.raises(RuntimeError, match="not enough replicas"):
        await outbox.publish()
    assert journal.entries == []
    assert not event.acked


@in_loop
async def test_a_batch_waits_only_for_its_own_writes() -> None:
    journal, table = Journal(), FakeTable()
    outbox = _outbox(table)
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
    outbox = _outbox(table, max_pending=2)
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
    outbox = _outbox(table)
    topic = FakeTopic("approved", journal)
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
