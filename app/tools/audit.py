"""`stopguard audit`: replay the recorded topics and check every decision.

The auditor reads the inputs (`sms.numbers`, `sms.inbound`,
`sms.optout.imports`, `sms.outbound.requests`) and the outputs (approved,
rejected, consent events, dead letters) from the beginning. For each
subscriber it replays the recorded consent events and decisions in their
`sequence` order, the order the worker applied them, calling the rules the
worker calls (`apply_inbound`, `apply_import`, `decide`,
`invalid_number_decision`) on the original input records, and compares what
comes out with what was recorded.

Each finding has a kind. The fatal ones (`FATAL_KINDS`) mean a recorded
decision cannot be trusted and make the command exit with 1; the others are
warnings for a person to look at.
"""

from __future__ import annotations

import bisect
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import orjson
from rich.console import Console
from rich.progress import Progress, TextColumn
from rich.table import Table

from app.errors import BrokerError, StopguardError
from app.keyword_policy import load_policy
from app.models import ConsentImport, InboundMessage, NumberRegistration, SendRequest
from app.rules.consent import (
    ScopeOptOut,
    SubscriberConsent,
    apply_import,
    apply_inbound,
    decide,
    invalid_number_decision,
)
from app.rules.keywords import BUILTIN_POLICIES, KeywordPolicy
from app.rules.numbers import SenderProfile, sender_number, subscriber_number
from app.rules.senders import SenderDirectory
from app.settings import Settings
from app.tools.clients import reader
from app.topics import load_catalog

TopicKey = Literal[
    "numbers",
    "inbound",
    "imports",
    "requests",
    "approved",
    "rejected",
    "events",
    "deadletter",
]
AUDITED_TOPICS: tuple[TopicKey, ...] = get_args(TopicKey)
FindingKind = Literal[
    "decision_differs",  # the replay decides otherwise
    "sender_profile",  # the sender was judged by another registration
    "contradiction",  # one request id carries two different decisions
    "wrong_topic",  # a decision sits on the other decision topic
    "missing_decision",  # a valid request was never decided
    "unknown_request",  # a decision whose request is not on the input topic
    "event_differs",  # a consent event the replay does not reproduce
    "missing_input",  # a consent event whose input record is not recorded
    "sequence_gap",  # a consent change or decision missing from the outputs
    "order",  # a send decided before an earlier keyword already on the broker
]
FATAL_KINDS: frozenset[str] = frozenset(
    {
        "decision_differs",
        "sender_profile",
        "contradiction",
        "wrong_topic",
        "missing_decision",
        "unknown_request",
    }
)
BATCH_SIZE = 10_000
# `consume` returns when it has a full batch or when this wait is over, so a
# long wait would be paid in full on the last, short batch.
BATCH_WAIT = 0.2
# With partitions left to read, this long without a record means the broker
# stopped answering.
IDLE_LIMIT = 30.0


class Record(NamedTuple):
    """One Kafka record as the auditor needs it (a tuple: cheap to build)."""

    topic: TopicKey
    key: bytes | None
    value: bytes | None
    timestamp: int  # milliseconds since the epoch
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True)
class AuditFilter:
    """Which requests the audit reports on; the replay always sees everything."""

    since: datetime | None = None
    until: datetime | None = None
    subscriber: str | None = None

    def covers_time(self, requested_at: datetime) -> bool:
        if self.since is not None and requested_at < self.since:
            return False
        return self.until is None or requested_at <= self.until


@dataclass
class Finding:
    kind: FindingKind
    subscriber: str
    detail: str
    request_id: str | None = None
    message_id: str | None = None
    recorded: Any = None
    replayed: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        return self.kind in FATAL_KINDS

    def to_json(self) -> bytes:
        body = {
            "kind": self.kind,
            "fatal": self.fatal,
            "subscriber": self.subscriber,
            "request_id": self.request_id,
            "message_id": self.message_id,
            "detail": self.detail,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "events": self.events,
        }
        return orjson.dumps(body)


@dataclass
class AuditSummary:
    records: int = 0
    requests: int = 0
    approved: int = 0
    rejected: int = 0
    acknowledgements: int = 0
    dead_letters: int = 0
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def discrepancies(self) -> int:
        return sum(1 for f in self.findings if f.fatal)

    @property
    def warnings(self) -> int:
        return len(self.findings) - self.discrepancies

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.discrepancies else 0


# The sender registry over time -------------------------------------------


class RegistryTimeline:
    """`sms.numbers` as it stood at any moment, by record timestamp."""

    def __init__(self) -> None:
        self._changes: dict[str, list[tuple[int, int, int, Any]]] = defaultdict(list)
        self._times: dict[str, list[int]] = {}
        self._profiles: dict[str, list[SenderProfile]] = {}
        self._unregistered = SenderDirectory()

    def add(self, record: Record) -> None:
        """Note a registration or tombstone; invalid ones the worker ignored too."""
        order = (record.timestamp, record.partition, record.offset)
        if record.value is None:
            if record.key:
                self._changes[record.key.decode()].append((*order, None))
            return
        try:
            registration = NumberRegistration.model_validate_json(record.value)
        except ValueError:
            return
        number = sender_number(registration.number)
        if number is not None:
            self._changes[number].append((*order, registration))

    def freeze(self) -> None:
        """Build each number's profiles in the order the registry changed."""
        for number, changes in self._changes.items():
            changes.sort(key=lambda change: change[:3])
            directory = SenderDirectory()
            profiles = []
            for *_, registration in changes:
                directory.register(number, registration)
                profiles.append(directory.profile(number))
            self._times[number] = [change[0] for change in changes]
            self._profiles[number] = profiles

    def profile_at(self, number: str, at_ms: int) -> SenderProfile:
        """How sends from `number` were judged at `at_ms`."""
        times = self._times.get(number)
        if times:
            index = bisect.bisect_right(times, at_ms)
            if index:
                return self._profiles[number][index - 1]
        return self._unregistered.profile(number)


# Replay ---------------------------------------------------------------------


@dataclass(slots=True)
class _Recorded:
    """A decision recorded for one request id, every distinct copy of it."""

    request_id: str
    # The first copy's `to` in canonical form, or as written if it is none.
    subscriber: str
    copies: list[tuple[TopicKey, dict[str, Any]]] = field(default_factory=list)

    @property
    def first(self) -> dict[str, Any]:
        return self.copies[0][1]

    @property
    def sequence(self) -> int | None:
        if len(self.copies) == 1:
            # The usual case, one copy, without building the lists below.
            only = self.copies[0][1].get("sequence")
            return only if isinstance(only, int) else None
        sequences = [c.get("sequence") for _, c in self.copies]
        known = [s for s in sequences if isinstance(s, int)]
        return min(known) if known else None


@dataclass(slots=True)
class _Step:
    """A consent event or a decision, at its place in a subscriber's replay."""

    sequence: int | None
    timestamp: int
    event: dict[str, Any] | None = None
    decision: _Recorded | None = None

    def order(self) -> tuple[bool, int, int, int, int]:
        # A decision carries the sequence of the last consent change it was
        # judged after: it follows that change, and decisions sharing one
        # number follow each other by decision time.
        if self.decision is None:
            return (self.sequence is None, self.sequence or 0, 0, 0, self.timestamp)
        decided = _epoch_ms(self.decision.first.get("decided_at"))
        return (self.sequence is None, self.sequence or 0, 1, decided, self.timestamp)


class Auditor:
    """Collects records, then replays them; no Kafka in here."""

    def __init__(
        self, policy: KeywordPolicy, audit_filter: AuditFilter | None = None
    ) -> None:
        self.policy = policy
        self.filter = audit_filter or AuditFilter()
        self.registry = RegistryTimeline()
        self.summary = AuditSummary()
        self._inbound: dict[str, tuple[dict[str, Any], int]] = {}
        self._imports: dict[str, tuple[dict[str, Any], int]] = {}
        # Parsed once on arrival and kept with the raw bytes, which the
        # missing-decision check validates as the worker did.
        self._requests: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._decisions: dict[str, _Recorded] = {}
        self._decision_times: dict[str, int] = {}
        self._events: dict[tuple[str, str, Any], tuple[dict[str, Any], int]] = {}
        # Each distinct number is parsed once however many records name it;
        # the rules' own cache is bounded and an audit may see more numbers.
        self._subscribers: dict[str, str | None] = {}
        self._handlers: dict[str, Callable[[Record], None]] = {
            "numbers": self.registry.add,
            "inbound": self._add_inbound,
            "imports": self._add_import,
            "requests": self._add_request,
            "approved": self._add_decision,
            "rejected": self._add_decision,
            "events": self._add_event,
            "deadletter": self._add_dead_letter,
        }

    # Collecting ---------------------------------------------------------

    def add(self, record: Record) -> None:
        self.summary.records += 1
        self._handlers[record.topic](record)

    def add_all(self, records: Iterable[Record]) -> None:
        summary, handlers = self.summary, self._handlers
        with _collector_paused():
            for record in records:
                summary.records += 1
                handlers[record.topic](record)

    def _add_inbound(self, record: Record) -> None:
        value = _loads(record.value)
        if value is not None and isinstance(value.get("message_id"), str):
            self._inbound.setdefault(value["message_id"], (value, record.timestamp))

    def _add_import(self, record: Record) -> None:
        value = _loads(record.value)
        if value is not None and isinstance(value.get("import_id"), str):
            self._imports.setdefault(value["import_id"], (value, record.timestamp))

    def _add_request(self, record: Record) -> None:
        value = _loads(record.value)
        if value is None or not isinstance(value.get("request_id"), str):
            return
        if not self._wanted(value.get("to")):
            return
        self._requests.setdefault(value["request_id"], (value, record.value or b""))

    def _add_decision(self, record: Record) -> None:
        value = _loads(record.value)
        if value is None or not isinstance(value.get("request_id"), str):
            return
        if not self._wanted(value.get("to")):
            return
        request_id = value["request_id"]
        recorded = self._decisions.get(request_id)
        if recorded is None:
            # Parsed now, while the consumer fetches the next records.
            raw = value.get("to")
            subscriber = self.subscriber_number(raw) if isinstance(raw, str) else None
            recorded = self._decisions[request_id] = _Recorded(
                request_id, subscriber or str(raw)
            )
            self._decision_times[request_id] = record.timestamp
        # At-least-once delivery repeats a decision byte for byte; keep one.
        copy = (record.topic, value)
        if copy not in recorded.copies:
            recorded.copies.append(copy)

    def _add_event(self, record: Record) -> None:
        value = _loads(record.value)
        if value is None or not self._wanted(value.get("subscriber")):
            return
        key = (value.get("subscriber"), value.get("event_id"), value.get("sequence"))
        self._events.setdefault(key, (value, record.timestamp))  # type: ignore[arg-type]

    def _add_dead_letter(self, record: Record) -> None:
        wanted = self.filter.subscriber
        if wanted is not None:
            key = (record.key or b"").decode("utf-8", "replace")
            raw = (record.value or b"").decode("utf-8", "replace")
            if self.subscriber_number(key) != wanted and wanted not in raw:
                return
        self.summary.dead_letters += 1

    def _wanted(self, raw_subscriber: object) -> bool:
        wanted = self.filter.subscriber
        if wanted is None:
            return True
        if not isinstance(raw_subscriber, str):
            return False
        if raw_subscriber == wanted:
            return True
        return self.subscriber_number(raw_subscriber) == wanted

    # Replaying ----------------------------------------------------------

    def finish(self) -> AuditSummary:
        """Replay every subscriber and check that every request was decided."""
        with _collector_paused():
            self.registry.freeze()
            for subscriber, steps in self._steps_by_subscriber().items():
                _SubscriberReplay(self, subscriber, steps).run()
            self._check_undecided()
        return self.summary

    def _steps_by_subscriber(self) -> dict[str, list[_Step]]:
        steps: dict[str, list[_Step]] = defaultdict(list)
        for (events_of, _, sequence), (event, stamp) in self._events.items():
            steps[str(events_of)].append(_Step(sequence, stamp, event=event))
        for request_id, recorded in self._decisions.items():
            stamp = self._decision_times[request_id]
            steps[recorded.subscriber].append(
                _Step(recorded.sequence, stamp, decision=recorded)
            )
        for group in steps.values():
            group.sort(key=_Step.order)
        return steps

    def _check_undecided(self) -> None:
        for request_id, (_, raw) in self._requests.items():
            if request_id in self._decisions:
                continue
            try:
                request = SendRequest.model_validate_json(raw)
            except ValueError:
                continue  # the worker dead-letters it
            if not self.filter.covers_time(request.requested_at):
                continue
            self.summary.requests += 1
            self.summary.findings.append(
                Finding(
                    "missing_decision",
                    request.subscriber,
                    "a valid send request on the requests topic has no decision",
                    request_id=request_id,
                    recorded=orjson.loads(raw),
                )
            )

    def request(self, request_id: str) -> dict[str, Any] | None:
        """The recorded send request, as parsed on arrival; not to be changed."""
        found = self._requests.get(request_id)
        return None if found is None else found[0]

    def subscriber_number(self, raw: str) -> str | None:
        """`subscriber_number` of the rules, remembered for the whole audit."""
        try:
            return self._subscribers[raw]
        except KeyError:
            canonical = self._subscribers[raw] = subscriber_number(raw)
            return canonical

    def input_of(self, event: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
        message_id = event.get("message_id", "")
        if str(event.get("policy") or "").startswith("import:"):
            return self._imports.get(message_id)
        return self._inbound.get(message_id)

    def policy_named(self, name: str | None) -> KeywordPolicy:
        """A builtin policy by its recorded name, otherwise the configured one."""
        if name in BUILTIN_POLICIES:
            return BUILTIN_POLICIES[name]
        return self.policy


class _SubscriberReplay:
    """One subscriber's consent events and decisions, replayed in order."""

    def __init__(self, auditor: Auditor, subscriber: str, steps: list[_Step]) -> None:
        self.auditor = auditor
        self.subscriber = subscriber
        self.steps = steps
        # Empty containers given, not defaulted: pydantic deep-copies defaults.
        self.consent = SubscriberConsent(subscriber=subscriber, opt_outs={}, history=[])
        self.applied: list[dict[str, Any]] = []

    def run(self) -> None:
        for step in self.steps:
            self._follow_sequence(step)
            if step.event is not None:
                self._replay_event(step.event, step.timestamp)
            elif step.decision is not None:
                self._replay_decision(step.decision)
        self._check_order()

    def _follow_sequence(self, step: _Step) -> None:
        if step.sequence is None:
            return
        # A consent change takes the next number; a decision takes the
        # number of the change before it.
        before = step.sequence - 1 if step.event is not None else step.sequence
        if before == self.consent.sequence:
            return
        if before > self.consent.sequence:
            missing = f"{self.consent.sequence + 1}..{before}"
            self._find(
                "sequence_gap",
                f"consent changes {missing} are on no output topic",
            )
        # Carry on from the recorded position so later comparisons stay fair.
        self.consent.sequence = before

    # Consent events -----------------------------------------------------

    def _replay_event(self, recorded: dict[str, Any], written_ms: int) -> None:
        self.applied.append(recorded)
        found = self.auditor.input_of(recorded)
        if found is None:
            self._find(
                "missing_input",
                "the input record behind this consent event is not recorded; "
                "the replay trusts the event",
                message_id=recorded.get("message_id"),
                recorded=recorded,
            )
            self._trust(recorded)
            return
        value, _ = found
        if "import_id" in value:
            replayed = apply_import(self.consent, _import(value))
        else:
            replayed = self._apply_inbound(value, recorded, written_ms)
        body = replayed.model_dump() if replayed is not None else None
        if body != recorded:
            self._find(
                "event_differs",
                "the replay does not reproduce this consent event",
                message_id=recorded.get("message_id"),
                recorded=recorded,
                replayed=body,
            )

    def _apply_inbound(
        self, value: dict[str, Any], recorded: dict[str, Any], written_ms: int
    ) -> Any:
        message = _inbound(value, self.subscriber)
        number = sender_number(message.number) or message.number
        # The worker judged the keyword just before it wrote the event, so
        # the event record's timestamp stands for the moment it was judged.
        profile = self.auditor.registry.profile_at(number, written_ms)
        policy = self.auditor.policy_named(recorded.get("policy"))
        return apply_inbound(self.consent, message, profile, policy)

    def _trust(self, recorded: dict[str, Any]) -> None:
        self.consent.sequence += 1
        scope, at = recorded["scope"], datetime.fromisoformat(recorded["at"])
        if recorded["action"] == "opt_out":
            self.consent.opt_outs[scope] = ScopeOptOut(
                opted_out_at=at,
                message_id=recorded["message_id"],
                keyword=recorded["keyword"],
                number=recorded["number"],
            )
        elif recorded["action"] == "opt_in":
            held = self.consent.opt_outs.get(scope)
            if held is not None and held.opted_out_at <= at:
                del self.consent.opt_outs[scope]

    # Decisions ----------------------------------------------------------

    def _replay_decision(self, recorded: _Recorded) -> None:
        first = recorded.first
        value = self.auditor.request(recorded.request_id)
        if value is None:
            if not self.auditor.filter.covers_time(_parse_time(first["requested_at"])):
                return
            self._find(
                "unknown_request",
                "a decision whose request is not on the requests topic",
                request_id=recorded.request_id,
                recorded=first,
            )
            return
        request = _send_request(value)
        replayed = self._decide(request, first.get("decided_at"))
        if self.auditor.filter.covers_time(request.requested_at):
            self._count(first)
            self._compare(recorded, replayed)

    def _decide(self, request: SendRequest, decided_at: Any) -> dict[str, Any]:
        moment = _parse_time(decided_at)
        sender = sender_number(request.sender)
        subscriber = self.auditor.subscriber_number(request.subscriber)
        if sender is None or subscriber is None:
            decision = invalid_number_decision(
                request, source_valid=sender is not None, decided_at=moment
            )
        else:
            at_ms = int(moment.timestamp() * 1000)
            profile = self.auditor.registry.profile_at(sender, at_ms)
            decision = decide(self.consent, request, profile, moment)
        return decision.model_dump(by_alias=True)

    def _count(self, decision: dict[str, Any]) -> None:
        summary = self.auditor.summary
        summary.requests += 1
        if decision.get("status") == "approved":
            summary.approved += 1
            summary.acknowledgements += bool(decision.get("ack"))
        else:
            summary.rejected += 1

    def _compare(self, recorded: _Recorded, replayed: dict[str, Any]) -> None:
        request_id = recorded.request_id
        if len(recorded.copies) > 1:
            self._find(
                "contradiction",
                f"{len(recorded.copies)} different decisions for one request id",
                request_id=request_id,
                recorded=[copy for _, copy in recorded.copies],
                replayed=replayed,
            )
        for topic, copy in recorded.copies:
            if copy.get("status") != topic:
                self._find(
                    "wrong_topic",
                    f"a decision with status {copy.get('status')!r} on the "
                    f"{topic} topic",
                    request_id=request_id,
                    recorded=copy,
                )
            if not _same_outcome(copy, replayed):
                self._find(
                    _difference_kind(copy, replayed),
                    _difference_detail(copy, replayed),
                    request_id=request_id,
                    recorded=copy,
                    replayed=replayed,
                )

    # Order --------------------------------------------------------------

    def _check_order(self) -> None:
        """Flag a send decided before a keyword stamped no later than it.

        Only keywords already on the broker when the send was decided count:
        a record produced later, however it is stamped, cannot be waited for.
        """
        keywords = []
        for event in self.applied:
            found = self.auditor.input_of(event)
            if found is None or not isinstance(event.get("sequence"), int):
                continue
            keywords.append(
                (_epoch_ms(event["at"]), event["sequence"], found[1], event)
            )
        if not keywords:
            return
        for step in self.steps:
            if step.decision is not None and step.sequence is not None:
                self._check_decision_order(step.decision, step.sequence, keywords)

    def _check_decision_order(
        self, recorded: _Recorded, sequence: int, keywords: list[tuple]
    ) -> None:
        first = recorded.first
        requested = _epoch_ms(first.get("requested_at"))
        decided = _epoch_ms(first.get("decided_at"))
        for at, applied, produced, event in keywords:
            if at <= requested and applied > sequence and produced <= decided:
                self._find(
                    "order",
                    f"decided at sequence {sequence}, before the keyword "
                    f"{event.get('message_id')} stamped {event.get('at')}, "
                    f"applied at sequence {applied}",
                    request_id=recorded.request_id,
                    message_id=event.get("message_id"),
                    recorded=first,
                )
                return

    def _find(self, kind: FindingKind, detail: str, **fields: Any) -> None:
        self.auditor.summary.findings.append(
            Finding(kind, self.subscriber, detail, events=list(self.applied), **fields)
        )


# Comparison helpers ---------------------------------------------------------


def _same_outcome(recorded: dict[str, Any], replayed: dict[str, Any]) -> bool:
    """Decision.same_outcome on plain dicts: everything but decided_at."""
    if recorded == replayed:
        # The usual case: the replay is judged at the recorded decided_at.
        return True
    keys = (recorded.keys() | replayed.keys()) - {"decided_at"}
    return all(recorded.get(k) == replayed.get(k) for k in keys)


def _difference_kind(recorded: dict[str, Any], replayed: dict[str, Any]) -> FindingKind:
    profile = ("enforced", "campaign_id")
    if any(recorded.get(k) != replayed.get(k) for k in profile):
        return "sender_profile"
    return "decision_differs"


def _difference_detail(recorded: dict[str, Any], replayed: dict[str, Any]) -> str:
    keys = sorted((recorded.keys() | replayed.keys()) - {"decided_at"})
    fields = [
        f"{k}: recorded {recorded.get(k)!r}, replayed {replayed.get(k)!r}"
        for k in keys
        if recorded.get(k) != replayed.get(k)
    ]
    return "; ".join(fields)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold off Python's cycle collector for one bulk step of the audit.

    The auditor keeps every record it reads and makes no reference cycles, so
    each automatic collection would only walk the growing heap again, freeing
    nothing; with 200,000 records kept, that was about half of `add_all`.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Fast record construction ---------------------------------------------------
#
# The worker validated these records before deciding on them, so the replay
# need not refuse any; the timestamps are parsed here, as validation would
# have done.


def _send_request(value: dict[str, Any]) -> SendRequest:
    fields = {
        "request_id": value["request_id"],
        "sender": value["from"],
        "subscriber": value["to"],
        "text": value["text"],
        "requested_at": _parse_time(value["requested_at"]),
    }
    # Validating a dict of these fields costs half of model_construct, and
    # keeps the parsed time as it is; a record the worker refused is still
    # built, unchecked, so that the replay judges whatever was recorded.
    try:
        return SendRequest.model_validate(fields)
    except ValueError:
        return SendRequest.model_construct(**fields)


def _inbound(value: dict[str, Any], subscriber: str) -> InboundMessage:
    return InboundMessage.model_construct(
        message_id=value["message_id"],
        subscriber=subscriber,
        number=value["to"],
        text=value["text"],
        received_at=_parse_time(value["received_at"]),
    )


def _import(value: dict[str, Any]) -> ConsentImport:
    return ConsentImport.model_construct(
        import_id=value["import_id"],
        subscriber=value["subscriber"],
        scope=value["scope"],
        at=_parse_time(value["at"]),
        source=value.get("source", "import"),
    )


def _parse_time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _epoch_ms(value: Any) -> int:
    try:
        return int(_parse_time(value).timestamp() * 1000)
    except ValueError:
        return 0


def _loads(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# Reading the topics ---------------------------------------------------------


def topic_names(settings: Settings) -> dict[str, TopicKey]:
    """The audited topics' names under this stack's prefix, to their keys."""
    catalog = load_catalog(settings)
    return {getattr(catalog, key): key for key in AUDITED_TOPICS}


def read_records(
    settings: Settings,
    on_total: Callable[[int], None] = lambda total: None,
    on_batch: Callable[[int], None] = lambda count: None,
) -> Iterator[Record]:
    """Every record of the audited topics, from the beginning to the current end."""
    from confluent_kafka import KafkaError, TopicPartition

    names = topic_names(settings)
    # The end of a partition is where the broker says EOF, not the high
    # watermark read beforehand: some brokers (the embedded Tansu among them)
    # report a watermark inside the last record batch.
    consumer = reader(settings, **{"enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(timeout=30)
        remaining: set[tuple[str, int]] = set()
        assignment = []
        total = 0
        for name in names:
            if name not in metadata.topics:
                continue
            for partition in metadata.topics[name].partitions:
                tp = TopicPartition(name, partition)
                low, high = consumer.get_watermark_offsets(tp, timeout=30)
                if high > low:
                    remaining.add((name, partition))
                    assignment.append(TopicPartition(name, partition, low))
                    total += high - low
        on_total(total)
        consumer.assign(assignment)
        last_record = time.monotonic()
        while remaining:
            batch = consumer.consume(BATCH_SIZE, timeout=BATCH_WAIT)
            if not batch:
                if time.monotonic() - last_record > IDLE_LIMIT:
                    raise BrokerError(
                        f"no record for {IDLE_LIMIT:.0f}s with {len(remaining)} "
                        "partitions still unread; check the broker and run again"
                    )
                continue
            last_record = time.monotonic()
            for message in batch:
                error = message.error()
                if error is None:
                    yield _record(names, message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard((message.topic(), message.partition()))
                else:
                    raise BrokerError(f"reading {message.topic()}: {error}")
            on_batch(len(batch))
    finally:
        consumer.close()


def _record(names: dict[str, TopicKey], message: Any) -> Record:
    return Record(
        names[message.topic()],
        message.key(),
        message.value(),
        message.timestamp()[1],
        message.partition(),
        message.offset(),
    )


def run_audit(
    settings: Settings,
    audit_filter: AuditFilter,
    on_total: Callable[[int], None] = lambda total: None,
    on_batch: Callable[[int], None] = lambda count: None,
) -> AuditSummary:
    """Read the topics, replay them, and time the whole run."""
    started = time.perf_counter()
    auditor = Auditor(load_policy(settings), audit_filter)
    auditor.add_all(read_records(settings, on_total, on_batch))
    summary = auditor.finish()
    summary.seconds = time.perf_counter() - started
    return summary


def write_report(summary: AuditSummary, path: Path) -> None:
    """Every finding, one JSON object a line."""
    with path.open("wb") as out:
        for finding in summary.findings:
            out.write(finding.to_json() + b"\n")


# The command ----------------------------------------------------------------


def parse_moment(raw: str | None, option: str) -> datetime | None:
    """An RFC 3339 option value; naive times are refused, not guessed."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise StopguardError(
            f"{option} {raw!r} is not an RFC 3339 time with an offset, "
            "e.g. 2025-04-11T00:00:00Z"
        )
    return moment


def audit_command(
    settings: Settings, audit_filter: AuditFilter, report: Path, console: Console
) -> int:
    """Run the audit with a progress bar, print the summary; the exit code."""
    columns = (*Progress.get_default_columns(), TextColumn("{task.completed} records"))
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=None)
        summary = run_audit(
            settings,
            audit_filter,
            on_total=lambda total: progress.update(task, total=total),
            on_batch=lambda count: progress.advance(task, count),
        )
    write_report(summary, report)
    print_summary(console, summary, report)
    return summary.exit_code


def print_summary(console: Console, summary: AuditSummary, report: Path) -> None:
    table = Table("", "count", title="audit")
    rows = (
        ("records read", summary.records),
        ("requests", summary.requests),
        ("approved", summary.approved),
        ("rejected", summary.rejected),
        ("acknowledgements", summary.acknowledgements),
        ("dead letters", summary.dead_letters),
        ("discrepancies", summary.discrepancies),
        ("warnings", summary.warnings),
    )
    for label, count in rows:
        table.add_row(label, str(count))
    console.print(table)
    for finding in summary.findings[:20]:
        style = "red" if finding.fatal else "yellow"
        target = finding.request_id or finding.message_id or ""
        console.print(f"[{style}]{finding.kind}[/] {finding.subscriber} {target}")
    console.print(
        f"replayed {summary.records} records in {summary.seconds:.2f} s "
        f"({summary.records_per_second:,.0f} records/s); "
        f"{len(summary.findings)} findings written to {report}"
    )
