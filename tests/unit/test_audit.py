"""The audit's replay and comparison, fed plain records (no broker)."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.models import InboundMessage, NumberRegistration, SendRequest, format_time
from app.rules.consent import (
    SubscriberConsent,
    apply_inbound,
    decide,
    invalid_number_decision,
)
from app.rules.keywords import STANDARD
from app.rules.senders import SenderDirectory
from app.tools.audit import AuditFilter, Auditor, Record

START = datetime(2025, 4, 1, 10, 0, tzinfo=UTC)
SUBSCRIBER = "+14155550100"
CAMPAIGN_NUMBER = "+12015550101"
OTHER_NUMBER = "+12015550103"


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def record(
    topic: str, value: dict[str, Any] | None, at: datetime, key: str = ""
) -> Record:
    raw = None if value is None else json.dumps(value).encode()
    return Record(topic, key.encode() or None, raw, ms(at))  # type: ignore[arg-type]


@dataclass
class Recorder:
    """Plays the worker: applies the rules and records inputs and outputs."""

    records: list[Record] = field(default_factory=list)
    directory: SenderDirectory = field(default_factory=SenderDirectory)
    consent: dict[str, SubscriberConsent] = field(default_factory=dict)
    clock: datetime = START
    count: int = 0

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def register(self, number: str, **fields: Any) -> None:
        value = {"number": number, "type": "long_code", "country": "US", **fields}
        self.directory.register(number, NumberRegistration.model_validate(value))
        self.records.append(record("numbers", value, self.tick(), number))

    def inbound(self, text: str, number: str, seconds: float) -> dict[str, Any]:
        self.count += 1
        value = {
            "message_id": f"in-{self.count}",
            "from": SUBSCRIBER,
            "to": number,
            "text": text,
            "received_at": format_time(START + timedelta(seconds=seconds)),
        }
        at = self.tick()
        self.records.append(record("inbound", value, at, SUBSCRIBER))
        state = self._state()
        message = InboundMessage.model_validate(value)
        event = apply_inbound(state, message, self.directory.profile(number), STANDARD)
        if event is not None:
            self.records.append(record("events", event.model_dump(), at))
        return value

    def send(self, number: str, seconds: float) -> dict[str, Any]:
        self.count += 1
        value = {
            "request_id": f"req-{self.count}",
            "from": number,
            "to": SUBSCRIBER,
            "text": "hello",
            "requested_at": format_time(START + timedelta(seconds=seconds)),
        }
        at = self.tick()
        self.records.append(record("requests", value, at, SUBSCRIBER))
        request = SendRequest.model_validate(value)
        decision = decide(self._state(), request, self.directory.profile(number), at)
        body = decision.model_dump(by_alias=True)
        self.records.append(record(decision.status, body, at, SUBSCRIBER))
        return body

    def _state(self) -> SubscriberConsent:
        return self.consent.setdefault(
            SUBSCRIBER, SubscriberConsent(subscriber=SUBSCRIBER)
        )


def audit(records: list[Record], audit_filter: AuditFilter | None = None):  # type: ignore[no-untyped-def]
    auditor = Auditor(STANDARD, audit_filter)
    auditor.add_all(records)
    return auditor.finish()


@pytest.fixture()
def recorded() -> Recorder:
    """STOP in a campaign, its acknowledgement, a rejection, START, an approval."""
    worker = Recorder()
    worker.register(CAMPAIGN_NUMBER, campaign_id="spring")
    worker.inbound("STOP", CAMPAIGN_NUMBER, 0)
    worker.send(CAMPAIGN_NUMBER, 60)
    worker.send(CAMPAIGN_NUMBER, 90)
    worker.inbound("hello there", CAMPAIGN_NUMBER, 100)
    worker.inbound("START", CAMPAIGN_NUMBER, 120)
    worker.send(CAMPAIGN_NUMBER, 180)
    return worker


def test_a_faithful_record_has_no_findings(recorded: Recorder) -> None:
    summary = audit(recorded.records)

    assert summary.findings == []
    assert (summary.requests, summary.approved, summary.rejected) == (3, 2, 1)
    assert summary.acknowledgements == 1
    assert summary.exit_code == 0


def test_replay_follows_sequence_not_topic_order(recorded: Recorder) -> None:
    decisions_first = sorted(recorded.records, key=lambda r: r.topic != "rejected")

    assert audit(decisions_first).findings == []


def test_a_rejected_send_written_as_approved_is_named(recorded: Recorder) -> None:
    rejected = next(r for r in recorded.records if r.topic == "rejected")
    forged = json.loads(rejected.value or b"") | {
        "status": "approved",
        "error_code": None,
        "reason": None,
    }
    tampered = [*recorded.records, record("approved", forged, recorded.tick())]

    summary = audit(tampered)

    kinds = {(f.kind, f.request_id) for f in summary.findings}
    assert ("decision_differs", forged["request_id"]) in kinds
    assert ("contradiction", forged["request_id"]) in kinds
    assert summary.exit_code == 1
    finding = next(f for f in summary.findings if f.kind == "decision_differs")
    assert [e["keyword"] for e in finding.events] == ["STOP"]


def test_a_request_without_decision_fails_the_audit(recorded: Recorder) -> None:
    last = recorded.records[-1]
    summary = audit(recorded.records[:-1])

    missing = [f for f in summary.findings if f.kind == "missing_decision"]
    assert [f.request_id for f in missing] == [
        json.loads(last.value or b"")["request_id"]
    ]
    assert summary.exit_code == 1


def test_a_decision_judged_by_another_registration_is_flagged() -> None:
    worker = Recorder()
    worker.inbound("STOP", OTHER_NUMBER, 0)
    worker.send(OTHER_NUMBER, 400)
    # The registry now says DND off, stamped before the decision was made.
    registration = {"number": OTHER_NUMBER, "type": "long_code", "country": "US"}
    earlier = START - timedelta(seconds=30)
    late = record("numbers", registration | {"dnd": False}, earlier, OTHER_NUMBER)

    summary = audit([late, *worker.records])

    assert [f.kind for f in summary.findings if f.fatal] == ["sender_profile"]


def test_a_lost_consent_event_is_a_sequence_gap_warning(recorded: Recorder) -> None:
    events = [r for r in recorded.records if r.topic == "events"]
    kept = [r for r in recorded.records if r is not events[-1]]

    summary = audit(kept)

    assert "sequence_gap" in {f.kind for f in summary.findings}


@pytest.mark.parametrize(
    ("audit_filter", "requests"),
    [
        pytest.param(AuditFilter(), 3, id="everything"),
        pytest.param(AuditFilter(since=START + timedelta(seconds=100)), 1, id="since"),
        pytest.param(AuditFilter(until=START + timedelta(seconds=90)), 2, id="until"),
        pytest.param(AuditFilter(subscriber="+14155550199"), 0, id="other-subscriber"),
    ],
)
def test_filters_choose_the_requests_reported(
    recorded: Recorder, audit_filter: AuditFilter, requests: int
) -> None:
    summary = audit(recorded.records, audit_filter)

    assert summary.requests == requests
    assert summary.findings == []


def test_a_request_the_schema_refuses_is_still_replayed() -> None:
    # Longer than a phone field may be: the worker would dead-letter this
    # request, but a decision recorded for it is judged all the same.
    sender = "+1" + "2" * 70
    value = {
        "request_id": "req-long",
        "from": sender,
        "to": SUBSCRIBER,
        "text": "hello",
        "requested_at": format_time(START),
    }
    request = SendRequest.model_construct(
        request_id="req-long",
        sender=sender,
        subscriber=SUBSCRIBER,
        text="hello",
        requested_at=START,
    )
    decision = invalid_number_decision(request, source_valid=False, decided_at=START)
    body = decision.model_dump(by_alias=True)
    records = [
        record("requests", value, START, SUBSCRIBER),
        record("rejected", body, START, SUBSCRIBER),
    ]

    summary = audit(records)

    assert summary.findings == []
    assert (summary.requests, summary.rejected) == (1, 1)


@pytest.mark.parametrize("enabled", [True, False], ids=["gc-on", "gc-off"])
def test_the_cycle_collector_is_left_as_found(
    recorded: Recorder, enabled: bool
) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        audit(recorded.records)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
