"""The worker's per-decision writes, through librdkafka, one future each.

Every decision costs a changelog write and an output record. Through Faust's
producer each of them is a `FutureMessage` with its callbacks, a slot in
Faust's buffer and aiokafka's accumulator, and protocol encoding in Python:
on two shared cores about as much as the rest of a decision together
(BENCHMARKS.md, "Where the time goes"). `DeliveryProducer` hands them to a
confluent-kafka producer instead, which batches and encodes them in C.

`produce` returns an asyncio future that settles when the brokers
acknowledge the record (acks=all, idempotent: a partition keeps the order
records were produced in, across retries) or refuse it. librdkafka reports
deliveries to a thread of ours, which settles each future on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from mode import Service

from app.settings import Settings

log = logging.getLogger(__name__)

# Long enough to fill a batch at stream speed, short next to a decision's
# latency budget.
LINGER_MS = 2
# How long a delivery report may keep the reports thread waiting in poll.
POLL_TIMEOUT = 0.1
# At stop: how long records still queued in librdkafka may take to leave.
FLUSH_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    offset: int


class DeliveryError(Exception):
    """The brokers refused a record, or it could not be delivered in time."""


class DeliveryProducer(Service):  # type: ignore[misc]
    """A confluent-kafka producer whose deliveries settle asyncio futures."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.config: dict[str, Any] = {
            **settings.confluent_config(),
            "client.id": f"{settings.app_id}-delivery",
            # Keys land where Faust, aiokafka and Java clients put them.
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": LINGER_MS,
        }
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Delivery reports not yet handed to the event loop.
        self._reports_due: list[tuple[asyncio.Future[Delivered], Any]] = []
        self._reporting = threading.Event()
        self._reports: threading.Thread | None = None

    async def on_start(self) -> None:
        if self._producer is None:
            self._begin()

    def _begin(self) -> None:
        # Also on the first `produce`: Faust starts services like this one
        # only after table recovery, and the agent may run before that.
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self.config)
        self._reporting.set()
        self._reports = threading.Thread(
            target=self._serve_reports, name="delivery-reports", daemon=True
        )
        self._reports.start()

    async def on_stop(self) -> None:
        if self._producer is None:
            return
        producer = self._producer
        left = await asyncio.to_thread(producer.flush, FLUSH_TIMEOUT)
        self._reporting.clear()
        if self._reports is not None:
            await asyncio.to_thread(self._reports.join)
        if left:
            log.error(
                "%d records were still undelivered %.0fs after the worker "
                "began to stop: their inputs were not committed and are "
                "processed again on restart",
                left,
                FLUSH_TIMEOUT,
            )

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
    ) -> asyncio.Future[Delivered]:
        """Hand a record to librdkafka; the future settles at its delivery."""
        if self._producer is None:
            self._begin()
        assert self._producer is not None and self._loop is not None
        written: asyncio.Future[Delivered] = self._loop.create_future()

        def report(error: KafkaError | None, message: Message) -> None:
            # In whichever thread polled; the message is only valid in here.
            if error is not None:
                outcome: Any = DeliveryError(f"{topic}: {error.str()}")
            else:
                where = (message.topic(), message.partition(), message.offset())
                outcome = Delivered(*where)  # type: ignore[arg-type]
            self._reports_due.append((written, outcome))

        options: dict[str, Any] = {"on_delivery": report}
        if partition is not None:
            options["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, key, **options)
                return written
            except BufferError:
                # librdkafka's queue is full: wait here for deliveries to
                # free room. The outbox's limit keeps this rare.
                self._producer.poll(POLL_TIMEOUT)

    def _serve_reports(self) -> None:
        """Poll librdkafka; hand each round's reports to the loop at once."""
        assert self._producer is not None and self._loop is not None
        while self._reporting.is_set():
            self._producer.poll(POLL_TIMEOUT)
            self._hand_over_reports()
        self._hand_over_reports()

    def _hand_over_reports(self) -> None:
        if self._reports_due:
            # Swapped, not cleared: a report appended meanwhile by another
            # polling thread lands in one list or the other, never lost.
            due, self._reports_due = self._reports_due, []
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_settle, due)


def _settle(reports: list[tuple[asyncio.Future[Delivered], Any]]) -> None:
    for written, outcome in reports:
        if written.done():
            continue
        if isinstance(outcome, Delivered):
            written.set_result(outcome)
        else:
            written.set_exception(outcome)
