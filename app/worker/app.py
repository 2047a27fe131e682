"""The Faust application: topics, tables and the agent that decides.

One agent consumes `sms.inbound`, `sms.outbound.requests` and the internal
re-keyed topic together. The three are co-partitioned by subscriber, so one
worker owns everything about a subscriber: the inbound messages, the sends
and the `consent` table rows, and it handles them one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import faust
from faust.types import TP, EventT, StreamT

from app.errors import InvalidRecord
from app.keyword_policy import load_policy
from app.models import (
    ConsentEvent,
    ConsentImport,
    Decision,
    InboundMessage,
    SendRequest,
)
from app.rules.consent import (
    SubscriberConsent,
    apply_import,
    apply_inbound,
    decide,
    invalid_number_decision,
)
from app.rules.numbers import sender_number, subscriber_number
from app.settings import Settings
from app.topics import TopicCatalog, load_catalog
from app.worker import metrics
from app.worker.alignment import EventTimeAligner, Kind
from app.worker.directory import DirectoryReader
from app.worker.event_context import acting_for
from app.worker.kafka_options import faust_credentials
from app.worker.partitioning import partition_for
from app.worker.records import dead_letter, parse

log = logging.getLogger(__name__)

SOURCE_HEADER = "stopguard-source"
RELEASE_INTERVAL = 0.02


@dataclass
class Held:
    """A valid record waiting in the aligner for its turn."""

    event: EventT
    record: InboundMessage | SendRequest | ConsentImport
    subscriber: str
    number: str  # our number: the sender of a send, the receiver of an inbound
    arrived: float = field(default_factory=time.monotonic)


def build_faust_app(settings: Settings, catalog: TopicCatalog) -> faust.App:
    """The Faust app object with stopguard's settings applied."""
    bootstrap = settings.require_bootstrap_servers()
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=catalog.partitions,
        topic_replication_factor=catalog.specs["inbound"].replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        canonical_url=settings.canonical_url or _advertised_url(settings),
        web_in_thread=False,
    )


def _advertised_url(settings: Settings) -> str:
    """Where other workers reach this one's HTTP API for keys it owns."""
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):
        # Bound to every interface (a container): peers use the host's name,
        # which in a Kubernetes StatefulSet resolves through its headless service.
        host = socket.getfqdn()
    return f"http://{host}:{settings.web_port}"


class Stopguard:
    """Wires the decision rules into a Faust app: one instance per worker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = load_catalog(settings)
        self.policy = load_policy(settings)
        self.app = build_faust_app(settings, self.catalog)
        self._declare_topics()
        self._declare_tables()
        self.directory = DirectoryReader(
            settings, self.catalog.numbers, on_invalid=self._dead_letter_registration
        )
        self.app.service(self.directory)  # type: ignore[arg-type]
        self.aligner: EventTimeAligner[Held] = EventTimeAligner(
            inbound_topics=(
                self.catalog.inbound,
                self.catalog.imports,
                self.catalog.rekeyed,
            ),
            max_idle=settings.max_idle_ms / 1000,
        )
        self._next_offsets: dict[TP, int] = {}
        self._lock = asyncio.Lock()
        self.app.agent(self.inputs, name="decide", concurrency=1)(self._consume)
        self.app.timer(RELEASE_INTERVAL)(self._release_held)
        self.app.on_partitions_revoked.connect(self._on_revoked)

    def _declare_topics(self) -> None:
        catalog = self.catalog
        self.inputs = self.app.topic(catalog.inbound, catalog.requests, catalog.rekeyed)
        self.rekeyed = self.app.topic(catalog.rekeyed)
        self.approved = self.app.topic(catalog.approved)
        self.rejected = self.app.topic(catalog.rejected)
        self.events = self.app.topic(catalog.events)
        self.deadletter = self.app.topic(catalog.deadletter)

    def _declare_tables(self) -> None:
        # Values are JSON documents the rules module reads and writes itself;
        # the changelogs are compacted topics named after the app id.
        raw = {"key_type": bytes, "value_type": bytes}
        partitions = self.catalog.partitions
        self.consent = self.app.Table("consent", partitions=partitions, **raw)
        self.decisions = self.app.Table("decisions", partitions=partitions, **raw)

    # The stream ----------------------------------------------------------

    async def _consume(self, stream: StreamT) -> None:
        await self.directory.loaded.wait()
        async for event in stream.noack().events():
            async with self._lock:
                await self._on_record(event)
                await self._handle_released()

    async def _on_record(self, event: EventT) -> None:
        message = event.message
        self._next_offsets[message.tp] = message.offset + 1
        topic = self._source_topic(event)
        try:
            if topic == self.catalog.inbound:
                await self._on_inbound(event, parse(InboundMessage, message.value))
            elif topic == self.catalog.imports:
                await self._on_import(event, parse(ConsentImport, message.value))
            else:
                await self._on_request(event, parse(SendRequest, message.value))
        except InvalidRecord as exc:
            await self._dead_letter(event, topic, str(exc))

    def _source_topic(self, event: EventT) -> str:
        topic = event.message.topic
        if topic != self.catalog.rekeyed:
            return topic
        headers = dict(event.message.headers or ())
        return bytes(headers[SOURCE_HEADER]).decode()

    async def _on_inbound(self, event: EventT, message: InboundMessage) -> None:
        subscriber = subscriber_number(message.subscriber)
        number = sender_number(message.number)
        if subscriber is None:
            raise InvalidRecord(
                f"inbound field 'from' is {message.subscriber!r}, not an E.164 "
                "subscriber number"
            )
        if number is None:
            raise InvalidRecord(
                f"inbound field 'to' is {message.number!r}, neither an E.164 "
                "number nor a short code"
            )
        if await self._rekeyed_elsewhere(event, subscriber, self.catalog.inbound):
            return
        held = Held(event, message, subscriber, number)
        self._hold("inbound", held, message.received_at.timestamp())

    async def _on_import(self, event: EventT, row: ConsentImport) -> None:
        subscriber = subscriber_number(row.subscriber)
        if subscriber is None:
            raise InvalidRecord(
                f"import field 'subscriber' is {row.subscriber!r}, not an E.164 "
                "subscriber number"
            )
        if await self._rekeyed_elsewhere(event, subscriber, self.catalog.imports):
            return
        held = Held(event, row, subscriber, number="")
        self._hold("inbound", held, row.at.timestamp())

    async def _on_request(self, event: EventT, request: SendRequest) -> None:
        sender = sender_number(request.sender)
        subscriber = subscriber_number(request.subscriber)
        if sender is None or subscriber is None:
            decision = invalid_number_decision(
                request, source_valid=sender is not None, decided_at=_now()
            )
            await self._record_decision(event, request.subscriber, decision, request)
            return
        if await self._rekeyed_elsewhere(event, subscriber, self.catalog.requests):
            return
        held = Held(event, request, subscriber, sender)
        self._hold("send", held, request.requested_at.timestamp())

    def _hold(self, kind: Kind, held: Held, timestamp: float) -> None:
        tp = held.event.message.tp
        self.aligner.push(kind, tp.topic, tp.partition, timestamp, held.arrived, held)
        metrics.HELD_RECORDS.set(len(self.aligner))

    async def _rekeyed_elsewhere(
        self, event: EventT, subscriber: str, source: str
    ) -> bool:
        """Forward a record that sits on another partition than its subscriber's."""
        expected = partition_for(subscriber, self.catalog.partitions)
        if event.message.partition == expected:
            return False
        await self.rekeyed.send(
            key=subscriber,
            value=event.message.value,
            partition=expected,
            headers={SOURCE_HEADER: source.encode()},
        )
        metrics.REKEYED.labels(source).inc()
        event.ack()
        return True

    # Handling records in event-time order ------------------------------

    async def _release_held(self) -> None:
        if len(self.aligner):
            async with self._lock:
                await self._handle_released()

    async def _handle_released(self) -> None:
        if not len(self.aligner):
            return
        caught_up = await self._caught_up_snapshot()
        released = list(
            self.aligner.release(
                time.monotonic(), lambda t, p: caught_up.get(TP(t, p), False)
            )
        )
        for held in released:
            if isinstance(held.record, InboundMessage):
                await self._apply_inbound(held)
            elif isinstance(held.record, ConsentImport):
                await self._apply_import(held)
            else:
                await self._judge(held)
                metrics.DECISION_LATENCY.observe(time.monotonic() - held.arrived)
        metrics.HELD_RECORDS.set(len(self.aligner))

    async def _caught_up_snapshot(self) -> dict[TP, bool]:
        """Which inbound partitions have nothing left to deliver right now."""
        consumer = self.app.consumer
        snapshot: dict[TP, bool] = {}
        for tp in consumer.assignment():
            if tp.topic not in self.aligner.inbound_topics:
                continue
            highwater = consumer.highwater(tp)
            position = self._next_offsets.get(tp)
            if position is None:
                position = await consumer.position(tp)
            snapshot[tp] = (
                highwater is not None
                and position is not None
                and (position >= highwater)
            )
        return snapshot

    async def _apply_inbound(self, held: Held) -> None:
        message = held.record
        assert isinstance(message, InboundMessage)
        with acting_for(held.event):
            consent = self._load_consent(held.subscriber)
            profile = self.directory.directory.profile(held.number)
            change = apply_inbound(consent, message, profile, self.policy)
            if change is not None:
                self.consent[held.subscriber] = consent.to_json()
        if change is None:
            metrics.PLAIN_TEXTS.inc()
        else:
            await self._publish_change(held.subscriber, change)
        held.event.ack()

    async def _apply_import(self, held: Held) -> None:
        row = held.record
        assert isinstance(row, ConsentImport)
        with acting_for(held.event):
            consent = self._load_consent(held.subscriber)
            change = apply_import(consent, row)
            self.consent[held.subscriber] = consent.to_json()
        await self._publish_change(held.subscriber, change)
        held.event.ack()

    async def _publish_change(self, subscriber: str, change: ConsentEvent) -> None:
        await self.events.send(key=subscriber, value=change.to_json())
        metrics.CONSENT_EVENTS.labels(change.action).inc()

    async def _judge(self, held: Held) -> None:
        request = held.record
        assert isinstance(request, SendRequest)
        with acting_for(held.event):
            if self.decisions.get(request.request_id) is None:
                consent = self._load_consent(held.subscriber)
                profile = self.directory.directory.profile(held.number)
                decision = decide(consent, request, profile, _now())
                self.consent[held.subscriber] = consent.to_json()
            else:
                decision = None  # a repeat: _record_decision sends the original
        await self._record_decision(held.event, held.subscriber, decision, request)

    async def _record_decision(
        self,
        event: EventT,
        subscriber: str,
        decision: Decision | None,
        request: SendRequest,
    ) -> None:
        """Keep the first decision for a request id and publish it (again)."""
        with acting_for(event):
            recorded = self.decisions.get(request.request_id)
            if recorded is not None:
                metrics.REPEATED_REQUESTS.inc()
                decision = Decision.model_validate_json(recorded)
            else:
                assert decision is not None
                recorded = decision.to_json()
                self.decisions[request.request_id] = recorded
        await self._emit(subscriber, decision, recorded)
        event.ack()

    async def _emit(self, subscriber: str, decision: Decision, raw: bytes) -> None:
        topic = self.approved if decision.status == "approved" else self.rejected
        await topic.send(key=subscriber, value=raw)
        metrics.DECISIONS.labels(decision.status, str(decision.error_code)).inc()

    def _load_consent(self, subscriber: str) -> SubscriberConsent:
        raw = self.consent.get(subscriber)
        if raw is None:
            return SubscriberConsent(subscriber=subscriber)
        return SubscriberConsent.from_json(raw)

    # Dead letters and rebalances ----------------------------------------

    async def _dead_letter(self, event: EventT, topic: str, error: str) -> None:
        message = event.message
        letter = dead_letter(
            topic, message.partition, message.offset, message.key, message.value, error
        )
        await self.deadletter.send(key=message.key, value=letter.to_json())
        metrics.DEAD_LETTERS.labels(topic).inc()
        log.warning(
            "dead letter topic=%s partition=%d offset=%d: %s",
            topic,
            message.partition,
            message.offset,
            error,
        )
        event.ack()

    async def _dead_letter_registration(self, record: object, error: str) -> None:
        letter = dead_letter(
            record.topic,
            record.partition,
            record.offset,  # type: ignore[attr-defined]
            record.key,
            record.value,
            error,  # type: ignore[attr-defined]
        )
        await self.deadletter.send(key=letter.key, value=letter.to_json())
        metrics.DEAD_LETTERS.labels(self.catalog.numbers).inc()
        log.warning("dead letter topic=%s: %s", self.catalog.numbers, error)

    async def _on_revoked(self, app: faust.App, revoked: set[TP], **_: object) -> None:
        # Held sends of revoked partitions are left unacknowledged: their new
        # owner reads them again from the last committed offset.
        partitions = {tp.partition for tp in revoked if tp.topic in self._topics()}
        if partitions:
            dropped = self.aligner.forget(partitions)
            log.info(
                "partitions revoked=%s held records handed back=%d",
                sorted(partitions),
                len(dropped),
            )
        for tp in revoked:
            self._next_offsets.pop(tp, None)

    def _topics(self) -> set[str]:
        catalog = self.catalog
        return {catalog.inbound, catalog.requests, catalog.imports, catalog.rekeyed}


def _now() -> datetime:
    return datetime.now(UTC)
