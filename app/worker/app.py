"""The Faust application: topics, tables and the agent that decides.

One agent consumes `sms.inbound`, `sms.outbound.requests`, `sms.optout.imports`
and the internal re-keyed topic together. They are co-partitioned by
subscriber, so one worker owns everything about a subscriber: its inbound
messages, its sends and its `consent` table row, handled one at a time in
event-time order (see alignment.py). Outputs leave through the outbox
(outbox.py), after the state behind them is durable.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import ConsumerRecord
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
    restore_decision,
)
from app.rules.numbers import sender_number, subscriber_number
from app.settings import Settings
from app.topics import TopicCatalog, load_catalog
from app.worker import metrics, tansu
from app.worker.alignment import CaughtUp, EventTimeAligner, Kind
from app.worker.delivery import DeliveryProducer
from app.worker.directory import DirectoryReader
from app.worker.event_context import acting_for
from app.worker.kafka_options import faust_credentials
from app.worker.outbox import ConfirmedTable, Outbox
from app.worker.partitioning import partition_for
from app.worker.records import dead_letter, parse
from app.worker.stall import StallWatch, partition_is_stuck

log = logging.getLogger(__name__)

SOURCE_HEADER = "stopguard-source"
# How often held sends are re-examined when the stream itself is quiet.
TICK_INTERVAL = 0.005
LAG_REPORT_INTERVAL = 5.0
# How long assigned inputs may deliver nothing before the worker steps in.
STALL_PATIENCE = 30.0
STALL_CHECK_INTERVAL = 5.0
REVOKE_COMMIT_TIMEOUT = 10.0


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
    app = faust.App(
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
        Table=ConfirmedTable,
    )
    if settings.broker_flavour == "tansu":
        # The embedded broker's ListOffsets answer stops inside the last
        # record batch; table recovery needs the true end (see tansu.py).
        app.transport = tansu.Transport(app.conf.broker_consumer, app)
    return app


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
        # Per input partition: below this offset every record was handled by
        # a previous owner that handed the partition back (see _hand_back).
        self._handled_below: dict[TP, int] = {}
        self._dead_letters: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._last_release = 0.0
        self._last_record_at = time.monotonic()
        self.stall_watch = StallWatch(patience=STALL_PATIENCE)
        self.app.agent(self.inputs, name="decide", concurrency=1)(self._consume)
        self.delivery = DeliveryProducer(settings)
        self.app.service(self.delivery)  # type: ignore[arg-type]
        for table in (self.consent, self.decisions):
            table.producer = self.delivery
        self.outbox = Outbox(self.delivery, [self.consent, self.decisions])
        self.app.task(self._tick)
        self.app.task(self._publish_outbox)
        self.app.task(self._watch_inputs)
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore
        self.app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore

    def _declare_topics(self) -> None:
        catalog = self.catalog
        inputs = (catalog.inbound, catalog.requests, catalog.imports, catalog.rekeyed)
        self._input_topics = set(inputs)
        self.inputs = self.app.topic(*inputs)
        # Decisions and consent events leave through the outbox, by name.
        self.rekeyed = self.app.topic(catalog.rekeyed)
        self.deadletter = self.app.topic(catalog.deadletter)

    def _declare_tables(self) -> None:
        # Values are JSON documents the rules module reads and writes itself.
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        # Faust opens one RocksDB per table partition, each by default with
        # three 64 MB memtables and its own block cache: small ones keep a
        # worker's memory flat as the tables grow.
        rocksdb = {
            "write_buffer_size": 4 << 20,
            "max_write_buffer_number": 2,
            "block_cache_size": 16 << 20,
        }
        specs = self.catalog.specs
        partitions = self.catalog.partitions
        self.consent: ConfirmedTable = self.app.Table(  # type: ignore[assignment]
            "consent",
            partitions=partitions,
            on_changelog_event=_count_restored("consent"),
            extra_topic_configs=specs["consent_changelog"].config,
            options=rocksdb,
            **raw,
        )
        # Decisions are kept for the idempotency horizon (the changelog's
        # retention): RocksDB drops older ones, so the table stays bounded.
        decisions_config = specs["decisions_changelog"].config
        self.decisions: ConfirmedTable = self.app.Table(  # type: ignore[assignment]
            "decisions",
            partitions=partitions,
            on_changelog_event=_count_restored("decisions"),
            extra_topic_configs=decisions_config,
            options=rocksdb | {"ttl": int(decisions_config["retention.ms"]) // 1000},
            **raw,
        )
        # Written only at hand-back, straight to its changelog; read by the
        # partition's next owner once Faust has restored it.
        self.progress: ConfirmedTable = self.app.Table(  # type: ignore[assignment]
            "progress",
            partitions=partitions,
            extra_topic_configs=specs["progress_changelog"].config,
            options=rocksdb,
            **raw,
        )

    # The stream ----------------------------------------------------------

    async def _consume(self, stream: StreamT) -> None:
        await self.directory.loaded.wait()
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            async with self._lock:
                await self._on_record(event)
                await self._handle_released()
                self._last_release = time.monotonic()
            await self.outbox.wait_for_room()

    async def _on_record(self, event: EventT) -> None:
        message = event.message
        self._last_record_at = time.monotonic()
        if message.offset < self._next_offsets.get(message.tp, 0):
            # Delivered again after Faust seeked back to the committed offset
            # (it can resume the flow before that seek at an assignment). The
            # first delivery, handled or still held, acknowledges the offset;
            # this copy is only marked done so that Faust's wait for
            # in-flight records at a rebalance or shutdown does not hang on it.
            message.acked = True
            metrics.REDELIVERED.inc()
            return
        self._next_offsets[message.tp] = message.offset + 1
        if message.offset < self._skip_below(event):
            # Decided and published before a hand-back whose commit did not
            # reach the group: answering again would only repeat it.
            metrics.REDELIVERED.inc()
            event.ack()
            return
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
        except Exception as exc:
            # A bug must not stop the partition behind one record: keep the
            # record for a replay once fixed, and tell a person.
            log.exception(
                "cannot process topic=%s partition=%d offset=%d",
                topic,
                message.partition,
                message.offset,
            )
            error = (
                f"stopguard failed on this record ({exc!r}); it is kept here "
                "to be replayed once the fault is fixed: report it"
            )
            await self._dead_letter(event, topic, error)

    def _skip_below(self, event: EventT) -> int:
        """The offset a previous owner handed this partition back at, or 0."""
        tp = event.message.tp
        known = self._handled_below.get(tp)
        if known is not None:
            return known
        with acting_for(event):
            raw = self.progress.get(_progress_key(tp))
        below = self._handled_below[tp] = int(raw) if raw else 0
        if below > event.message.offset:
            log.info(
                "topic=%s partition=%d skips offsets %d..%d: handled before the "
                "partition was handed back, but the group's commit missed them",
                tp.topic,
                tp.partition,
                event.message.offset,
                below - 1,
            )
        return below

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
            self._decide_invalid(event, request, sender_ok=sender is not None)
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

    async def _tick(self) -> None:
        """Release sends whose wait is over while the stream is quiet."""
        next_lag_report = 0.0
        # Runs until the app is torn down, not merely stopping: while Faust
        # waits for in-flight records at shutdown, held sends must still be
        # decided so that they are acknowledged before the final commit.
        while True:
            await asyncio.sleep(TICK_INTERVAL)
            # A busy stream releases held records itself after every record.
            quiet = time.monotonic() - self._last_release >= TICK_INTERVAL
            if quiet and len(self.aligner):
                async with self._lock:
                    await self._handle_released()
            if time.monotonic() >= next_lag_report:
                self._report_lag()
                next_lag_report = time.monotonic() + LAG_REPORT_INTERVAL

    async def _publish_outbox(self) -> None:
        # Like the tick, runs until the app is torn down.
        try:
            await self.outbox.run()
        except Exception as exc:
            log.critical(
                "a changelog write was refused (%r): stopping the worker; what "
                "it decided since its last commit is processed again on restart",
                exc,
            )
            await self.app.crash(exc)

    async def _watch_inputs(self) -> None:
        """Step in when assigned inputs deliver nothing (see stall.py)."""
        while True:
            await asyncio.sleep(STALL_CHECK_INTERVAL)
            if self.app.rebalancing:
                self.stall_watch.reset()
                continue
            stuck = self._stuck_partitions()
            if self.stall_watch.look(time.monotonic(), bool(stuck)):
                self._ask_for_new_assignment(stuck)

    def _stuck_partitions(self) -> list[TP]:
        if not self.directory.loaded.is_set() or self.outbox.full:
            return []  # the agent is waiting on purpose
        consumer = self.app.consumer
        idle_for = time.monotonic() - self._last_record_at
        stuck = []
        for tp in consumer.assignment():
            if tp.topic not in self._input_topics:
                continue
            highwater = consumer.highwater(tp)
            position = self._position(tp)
            if partition_is_stuck(highwater, position, idle_for, STALL_CHECK_INTERVAL):
                stuck.append(tp)
        return stuck

    def _ask_for_new_assignment(self, stuck: list[TP]) -> None:
        consumer = self.app.consumer
        log.error(
            "input partitions %s are assigned but nothing reached the agent for "
            "%.0fs; asking the group for a new assignment (app flow active=%s, "
            "consumer flow active=%s, generation=%s, highwaters=%s)",
            sorted(f"{tp.topic}:{tp.partition}" for tp in stuck),
            time.monotonic() - self._last_record_at,
            self.app.flow_control.is_active(),
            consumer.flow_active,  # type: ignore[attr-defined]
            self.app.consumer_generation_id,
            {f"{tp.topic}:{tp.partition}": consumer.highwater(tp) for tp in stuck},
        )
        metrics.STALL_REJOINS.inc()
        # The hand-back at the revocation keeps the new assignment from
        # repeating any decision. aiokafka's coordinator lives on the
        # consumer thread's loop.
        thread = consumer._thread  # type: ignore[attr-defined]
        coordinator = thread._ensure_consumer()._coordinator
        thread.thread_loop.call_soon_threadsafe(coordinator.request_rejoin)

    def _report_lag(self) -> None:
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic not in self._input_topics:
                continue
            highwater = consumer.highwater(tp)
            position = self._position(tp)
            if highwater is not None:
                lag = max(highwater - position, 0)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    async def _handle_released(self) -> None:
        if not len(self.aligner):
            return
        released = list(self.aligner.release(time.monotonic(), self._caught_up()))
        for held in released:
            if isinstance(held.record, InboundMessage):
                await self._apply_inbound(held)
            elif isinstance(held.record, ConsentImport):
                await self._apply_import(held)
            else:
                await self._judge(held)
                metrics.DECISION_LATENCY.observe(time.monotonic() - held.arrived)
        metrics.HELD_RECORDS.set(len(self.aligner))

    def _caught_up(self) -> CaughtUp:
        """Whether an inbound partition has nothing more to deliver.

        Asked only for the sends that wait on it, and answered once per
        release: the positions do not move while a release runs.
        """
        consumer = self.app.consumer
        answers: dict[TP, bool] = {}

        def caught_up(topic: str, partition: int) -> bool:
            tp = TP(topic, partition)
            answer = answers.get(tp)
            if answer is None:
                highwater = consumer.highwater(tp)
                answer = highwater is not None and highwater <= self._position(tp)
                answers[tp] = answer
            return answer

        return caught_up

    def _position(self, tp: TP) -> int:
        """The offset of the next record this worker expects from a partition."""
        position = self._next_offsets.get(tp)
        return self._start_offset(tp) if position is None else position

    def _start_offset(self, tp: TP) -> int:
        """Where reading began for a partition that has delivered nothing yet.

        Faust seeks each assigned partition to its committed offset and keeps
        that offset on the event loop. Asking the consumer thread instead
        (`position()`) could wait on a rebalance that waits on this worker.
        """
        committed = self.app.consumer._committed_offset.get(tp)  # type: ignore
        return committed if committed is not None else 0

    async def _apply_inbound(self, held: Held) -> None:
        message = held.record
        assert isinstance(message, InboundMessage)
        if self.policy.classify(message.text) is None:
            # Plain text changes nothing, so the state is not even read.
            metrics.PLAIN_TEXTS.inc()
            self.outbox.add(held.event)
            return
        with acting_for(held.event):
            consent = self._load_consent(held.subscriber)
            profile = self.directory.directory.profile(held.number)
            change = apply_inbound(consent, message, profile, self.policy)
            assert change is not None  # a keyword always makes an event
            self.consent[held.subscriber] = consent.to_json()
        self._publish_change(held, change)

    async def _apply_import(self, held: Held) -> None:
        row = held.record
        assert isinstance(row, ConsentImport)
        with acting_for(held.event):
            consent = self._load_consent(held.subscriber)
            change = apply_import(consent, row)
            self.consent[held.subscriber] = consent.to_json()
        self._publish_change(held, change)

    def _publish_change(self, held: Held, change: ConsentEvent) -> None:
        self.outbox.add(
            held.event, (self.catalog.events, held.subscriber, change.to_json())
        )
        metrics.CONSENT_EVENTS.labels(change.action).inc()

    async def _judge(self, held: Held) -> None:
        request = held.record
        assert isinstance(request, SendRequest)
        with acting_for(held.event):
            consent = self._load_consent(held.subscriber)
            recorded = self._recorded_decision(request.request_id)
            if recorded is not None:
                decision = recorded
                changed = restore_decision(consent, recorded)
            else:
                profile = self.directory.directory.profile(held.number)
                decision = decide(consent, request, profile, _now())
                self.decisions[request.request_id] = decision.to_json()
                changed = decision.ack
            if changed:
                self.consent[held.subscriber] = consent.to_json()
        self._publish_decision(held.event, held.subscriber, decision)

    def _decide_invalid(
        self, event: EventT, request: SendRequest, sender_ok: bool
    ) -> None:
        with acting_for(event):
            decision = self._recorded_decision(request.request_id)
            if decision is None:
                decision = invalid_number_decision(
                    request, source_valid=sender_ok, decided_at=_now()
                )
                self.decisions[request.request_id] = decision.to_json()
        self._publish_decision(event, request.subscriber, decision)

    def _recorded_decision(self, request_id: str) -> Decision | None:
        """The decision already given to this request id, if any (a repeat)."""
        raw = self.decisions.get(request_id)
        if raw is None:
            return None
        metrics.REPEATED_REQUESTS.inc()
        return Decision.model_validate_json(raw)

    def _publish_decision(
        self, event: EventT, subscriber: str, decision: Decision
    ) -> None:
        approved = decision.status == "approved"
        topic = self.catalog.approved if approved else self.catalog.rejected
        self.outbox.add(event, (topic, subscriber, decision.to_json()))
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
        self._log_dead_letter(
            topic, f"partition={message.partition} offset={message.offset}: {error}"
        )
        event.ack()

    def _log_dead_letter(self, topic: str, detail: str) -> None:
        # Hostile input can be a flood: the first dead letter of a topic and
        # then every hundredth is logged; the metric counts them all.
        count = self._dead_letters.get(topic, 0) + 1
        self._dead_letters[topic] = count
        if count == 1 or count % 100 == 0:
            log.warning("dead letter topic=%s total=%d %s", topic, count, detail)

    async def _dead_letter_registration(
        self, record: ConsumerRecord, error: str
    ) -> None:
        letter = dead_letter(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            error,
        )
        await self.deadletter.send(key=letter.key, value=letter.to_json())
        metrics.DEAD_LETTERS.labels(self.catalog.numbers).inc()
        self._log_dead_letter(self.catalog.numbers, error)

    async def _on_revoked(self, app: faust.App, revoked: set[TP], **_: object) -> None:
        self.stall_watch.reset()
        self._last_record_at = time.monotonic()
        await self._hand_back(revoked, "revoked")

    async def _on_shutdown(self, app: faust.App, **_: object) -> None:
        # Faust has stopped fetching and waited for every record in flight.
        await self._hand_back(set(self._next_offsets), "stopping")

    async def _hand_back(self, partitions: set[TP], why: str) -> None:
        """Publish, then commit what was handled, before partitions go."""
        # Held records are left unacknowledged: their next owner reads them
        # again.
        async with self._lock:
            await self.outbox.publish()
            mine = {tp for tp in partitions if tp.topic in self._input_topics}
            dropped = self.aligner.forget({tp.partition for tp in mine})
        if mine:
            log.info(
                "partitions %s=%s held records handed back=%d",
                why,
                sorted({tp.partition for tp in mine}),
                len(dropped),
            )
        # The new owner starts at the committed offsets: committing what was
        # handled keeps it from being decided, and published, a second time.
        # Bounded, so that a slow commit cannot hold up the rebalance itself.
        offsets = self._handled_offsets(mine, dropped)
        if offsets:
            try:
                committed = await asyncio.wait_for(
                    self._record_and_commit(offsets), REVOKE_COMMIT_TIMEOUT
                )
            except TimeoutError:
                committed = False
            if not committed:
                log.warning(
                    "commit of handled offsets failed when partitions were %s "
                    "(timed out after %.0fs or refused by the group): the next "
                    "owner reads the records handled since the last commit "
                    "again and answers them with their recorded decisions",
                    why,
                    REVOKE_COMMIT_TIMEOUT,
                )
        for tp in partitions:
            self._next_offsets.pop(tp, None)
            self._handled_below.pop(tp, None)

    def _handled_offsets(self, revoked: set[TP], held: list[Held]) -> dict[TP, int]:
        """Per revoked partition, the offset after the last record handled.

        Faust forgets a partition's acknowledgements when it is revoked,
        before any commit of its own can cover those since the last periodic
        commit; this worker knows them. Every record it was given is
        acknowledged by now (the outbox is published) or was held; a held
        record's offset bounds what may be committed.
        """
        offsets = {
            tp: self._next_offsets[tp] for tp in revoked if tp in self._next_offsets
        }
        for item in held:
            tp = item.event.message.tp
            if tp in offsets:
                offsets[tp] = min(offsets[tp], item.event.message.offset)
        return offsets

    async def _record_and_commit(self, offsets: dict[TP, int]) -> bool:
        """Store the handled offsets in the progress changelog, then commit them.

        A group may refuse or lose a commit made while it rebalances; the
        progress records reach the next owner through table recovery either
        way, so it does not decide those records a second time.
        """
        # Outputs are handed to the producer before their inputs are
        # acknowledged: they must be stored before the offsets move past.
        await self.outbox.delivered()
        await self.app.producer.flush()
        changelog = self.progress.changelog_topic_name
        for tp, offset in offsets.items():
            await self.app.producer.send_and_wait(
                changelog,
                _progress_key(tp),
                str(offset).encode(),
                tp.partition,
                None,
                None,
            )
        # False when the group has moved on and refused the commit.
        committed = await self.app.consumer._commit(offsets)  # type: ignore
        return bool(committed)


def _progress_key(tp: TP) -> bytes:
    return f"{tp.topic}:{tp.partition}".encode()


def _count_restored(table: str) -> Callable[[EventT], Awaitable[None]]:
    counter = metrics.CHANGELOG_RESTORED.labels(table)

    async def on_changelog_event(event: EventT) -> None:
        counter.inc()

    return on_changelog_event


def _now() -> datetime:
    return datetime.now(UTC)
