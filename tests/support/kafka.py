"""Producing scenario records and reading stopguard's outputs back."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from app.models import format_time
from app.settings import Settings
from app.topics import TopicCatalog, load_catalog
from tests.support.worker import WorkerProcess


def stamp(moment: datetime) -> str:
    return format_time(moment) or ""


@dataclass
class Scenario:
    """Builds wire records with unique ids, so tests share one worker."""

    start: datetime
    tag: str

    @classmethod
    def new(cls, start: datetime | None = None) -> Scenario:
        begin = start or datetime.now(UTC).replace(microsecond=0)
        return cls(begin, uuid.uuid4().hex[:10])

    def at(self, seconds: float) -> str:
        return stamp(self.start + timedelta(seconds=seconds))

    def inbound(
        self, subscriber: str, number: str, text: str, seconds: float, **extra: Any
    ) -> dict[str, Any]:
        return {
            "message_id": f"{self.tag}-in-{uuid.uuid4().hex[:8]}",
            "from": subscriber,
            "to": number,
            "text": text,
            "received_at": self.at(seconds),
            **extra,
        }

    def send(
        self, sender: str, subscriber: str, seconds: float, text: str = "hello"
    ) -> dict[str, Any]:
        return {
            "request_id": f"{self.tag}-req-{uuid.uuid4().hex[:8]}",
            "from": sender,
            "to": subscriber,
            "text": text,
            "requested_at": self.at(seconds),
        }


class KafkaClient:
    """An outside producer and reader, as a business would run them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics: TopicCatalog = load_catalog(settings)
        self._producer = Producer(
            {
                **settings.confluent_config(),
                "partitioner": "murmur2_random",
                "linger.ms": 2,
                **_batching(settings),
            }
        )
        self._outputs = _tail_reader(
            settings,
            [
                self.topics.approved,
                self.topics.rejected,
                self.topics.events,
                self.topics.deadletter,
            ],
        )
        self.seen: dict[str, list[dict[str, Any]]] = {}
        # Where each seen record sat: (partition, offset, timestamp in ms).
        self.positions: dict[str, list[tuple[int, int, int]]] = {}

    def produce(
        self,
        topic: str,
        value: dict[str, Any] | bytes | None,
        key: str | bytes | None = "auto",
        partition: int | None = None,
    ) -> None:
        """Produce one record; the key defaults to the subscriber's number."""
        if key == "auto":
            key = _subscriber_of(value) if isinstance(value, dict) else None
        payload = json.dumps(value).encode() if isinstance(value, dict) else value
        extra = {} if partition is None else {"partition": partition}
        encoded = key.encode() if isinstance(key, str) else key
        self._producer.produce(topic, key=encoded, value=payload, **extra)
        self._producer.poll(0)

    def inbound(self, record: dict[str, Any], **kwargs: Any) -> None:
        self.produce(self.topics.inbound, record, **kwargs)

    def send(self, record: dict[str, Any], **kwargs: Any) -> None:
        self.produce(self.topics.requests, record, **kwargs)

    def register(self, number: str, **fields: Any) -> None:
        registration = {
            "number": number,
            "type": "long_code",
            "country": "US",
            "campaign_id": None,
            "dnd": None,
            **fields,
        }
        self.produce(self.topics.numbers, registration, key=number)

    def flush(self) -> None:
        self._producer.flush(30)

    def poll_outputs(self, timeout: float = 0.2) -> None:
        """Read whatever stopguard wrote since the last call."""
        for message in self._outputs.consume(1000, timeout=timeout):
            if message.error():
                continue
            self.seen.setdefault(message.topic(), []).append(
                json.loads(message.value())
            )
            self.positions.setdefault(message.topic(), []).append(
                (message.partition(), message.offset(), message.timestamp()[1])
            )

    def wait_for(
        self,
        done: Callable[[], bool],
        timeout: float = 60,
        what: str = "records",
    ) -> None:
        self.flush()
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            self.poll_outputs()

    def decisions(self, request_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = set(request_ids)
        found: dict[str, dict[str, Any]] = {}
        for topic in (self.topics.approved, self.topics.rejected):
            for record in self.seen.get(topic, []):
                if record["request_id"] in wanted:
                    found.setdefault(record["request_id"], record)
        return found

    def all_decisions(self, request_id: str) -> list[dict[str, Any]]:
        return [
            record
            for topic in (self.topics.approved, self.topics.rejected)
            for record in self.seen.get(topic, [])
            if record["request_id"] == request_id
        ]

    def await_decisions(
        self, sends: Iterable[dict[str, Any]], timeout: float = 60
    ) -> dict[str, dict[str, Any]]:
        ids = [send["request_id"] for send in sends]
        self.wait_for(
            lambda: len(self.decisions(ids)) == len(set(ids)),
            timeout,
            f"decisions of {len(ids)} requests",
        )
        return self.decisions(ids)

    def applied(self, inbound: dict[str, Any], timeout: float = 60) -> None:
        """Wait until the worker has turned an inbound keyword into its event."""
        message_id = inbound["message_id"]
        self.wait_for(
            lambda: any(
                e["message_id"] == message_id
                for e in self.seen.get(self.topics.events, [])
            ),
            timeout,
            f"the consent event of {message_id}",
        )

    def consent_events(self, subscriber: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.seen.get(self.topics.events, [])
            if e["subscriber"] == subscriber
        ]

    def dead_letters(self, marker: str) -> list[dict[str, Any]]:
        return [
            d
            for d in self.seen.get(self.topics.deadletter, [])
            if marker in d["raw"] or marker in (d["key"] or "")
        ]

    def close(self) -> None:
        self.flush()
        self._outputs.close()


def registered(
    kafka: KafkaClient, worker: WorkerProcess, number: str, **fields: Any
) -> str:
    """Register a number and wait until the worker judges sends by it."""
    kafka.register(number, **fields)
    kafka.flush()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = worker.get(f"/numbers/{number}")
        if status == 200 and all(body.get(k) == v for k, v in fields.items()):
            return number
        time.sleep(0.2)
    raise TimeoutError(f"registration of {number} never reached the worker")


def _batching(settings: Settings) -> dict[str, Any]:
    # The embedded broker's high watermark is exact only after one-record
    # batches (see app/worker/app.py); real producers on Kafka batch freely.
    if settings.broker_flavour == "tansu":
        return {"batch.num.messages": 1}
    return {}


def _subscriber_of(value: dict[str, Any]) -> str | None:
    key = value.get("to") if "request_id" in value else value.get("from")
    return key if isinstance(key, str) else None


def _tail_reader(settings: Settings, topics: list[str]) -> Consumer:
    """Reads what is written from now on; assigned, so no group join to wait for."""
    consumer = Consumer(
        {
            **settings.confluent_config(),
            "group.id": f"stopguard-tests-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(timeout=30)
    assignment = []
    for topic in topics:
        for partition in metadata.topics[topic].partitions:
            tp = TopicPartition(topic, partition)
            _, end = consumer.get_watermark_offsets(tp, timeout=30)
            assignment.append(TopicPartition(topic, partition, end))
    consumer.assign(assignment)
    return consumer
