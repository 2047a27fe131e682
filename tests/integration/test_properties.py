"""Property-based tests through the shared worker: hostile input, model check.

Each hypothesis example is a batch of records played against the real worker,
so the example counts are small; the shared worker keeps them affordable.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.kafka import KafkaClient, Scenario, registered
from tests.support.model import Model, Number
from tests.support.numbers import fresh_subscriber, fresh_us_sender
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

LIVE = settings(
    max_examples=12,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
Outcome = Literal["decision", "dead_letter"]
# Lone surrogates cannot travel as UTF-8, so no producer can send them.
_NO_SURROGATES = st.characters(blacklist_categories=("Cs",))
_ODD_UNICODE = st.characters(whitelist_categories=("Mn", "Cf", "Zs", "So", "Lo"))


@dataclass(frozen=True)
class Hostile:
    topic: Literal["inbound", "requests"]
    key: str
    value: bytes
    expected: Outcome


def _marker() -> str:
    return uuid.uuid4().hex


@st.composite
def hostile_records(draw: st.DrawFn) -> Hostile:
    marker = _marker()
    good = {
        "request_id": marker,
        "from": fresh_us_sender(),
        "to": fresh_subscriber(),
        "text": draw(st.text(_NO_SURROGATES, max_size=200)),
        "requested_at": "2026-06-01T12:00:00Z",
    }
    variant = draw(
        st.sampled_from(
            [
                "good",
                "odd-unicode",
                "long-text",
                "bad-sender",
                "bad-destination",
                "broken-json",
                "binary",
                "wrong-type",
                "missing-field",
                "huge-text",
                "null-timestamp",
                "inbound-bad-number",
                "inbound-missing-field",
            ]
        )
    )
    if variant in ("good", "odd-unicode", "long-text", "bad-sender", "bad-destination"):
        changes: dict[str, Any] = {
            "odd-unicode": {"text": draw(st.text(_ODD_UNICODE, max_size=300))},
            "long-text": {"text": "x" * 5000},
            "bad-sender": {"from": draw(st.sampled_from(["+1", "abc", "12"]))},
            "bad-destination": {"to": draw(st.sampled_from(["+1", "555", "x"]))},
        }.get(variant, {})
        value = json.dumps(good | changes).encode()
        return Hostile("requests", marker, value, "decision")
    if variant == "broken-json":
        text = json.dumps(good)
        cut = draw(st.integers(1, len(text) - 1))
        return Hostile("requests", marker, text[:cut].encode(), "dead_letter")
    if variant == "binary":
        blob = draw(st.binary(min_size=1, max_size=100))
        return Hostile("requests", marker, b"\xff" + blob, "dead_letter")
    if variant == "wrong-type":
        field = draw(st.sampled_from(["request_id", "text", "from"]))
        bad = draw(st.sampled_from([7, None, [1], {"a": 1}, True]))
        return Hostile("requests", marker, _dump(good | {field: bad}), "dead_letter")
    if variant == "missing-field":
        field = draw(st.sampled_from(sorted(good)))
        rest = {k: v for k, v in good.items() if k != field}
        return Hostile("requests", marker, _dump(rest), "dead_letter")
    if variant == "huge-text":
        return Hostile(
            "requests", marker, _dump(good | {"text": "y" * 70_000}), "dead_letter"
        )
    if variant == "null-timestamp":
        value = _dump(good | {"requested_at": None})
        return Hostile("requests", marker, value, "dead_letter")
    inbound = {
        "message_id": marker,
        "from": fresh_subscriber(),
        "to": fresh_us_sender(),
        "text": "STOP",
        "received_at": "2026-06-01T12:00:00Z",
    }
    if variant == "inbound-bad-number":
        inbound["from"] = draw(st.sampled_from(["+1", "hello", "52020"]))
    else:
        del inbound[draw(st.sampled_from(sorted(inbound)))]
    return Hostile("inbound", marker, _dump(inbound), "dead_letter")


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


@LIVE
@given(records=st.lists(hostile_records(), min_size=5, max_size=25))
def test_hostile_input_never_stops_the_worker(
    kafka: KafkaClient, shared_worker: WorkerProcess, records: list[Hostile]
) -> None:
    for record in records:
        topic = getattr(kafka.topics, record.topic)
        kafka.produce(topic, record.value, key=record.key)

    expected_decisions = [r.key for r in records if r.expected == "decision"]
    expected_letters = [r.key for r in records if r.expected == "dead_letter"]
    kafka.wait_for(
        lambda: (
            len(kafka.decisions(expected_decisions)) == len(expected_decisions)
            and all(kafka.dead_letters(key) for key in expected_letters)
        ),
        timeout=60,
        what="a decision or dead letter for every record",
    )

    for record in records:
        if record.expected == "dead_letter":
            letter = kafka.dead_letters(record.key)[0]
            assert letter["source_topic"] == getattr(kafka.topics, record.topic)
            assert len(letter["error"]) > 20
    assert shared_worker.get("/health")[0] == 200


# The model check ----------------------------------------------------------

Step = tuple[str, int, int, str, int]  # kind, subscriber, number, text, seconds
TEXTS = ["STOP", "stop.", " Stop All ", "END", "start", "UNSTOP", "hello", "Stop!"]
GAPS = [0, 20, 90, 200, 301, 900]


@st.composite
def scenarios(draw: st.DrawFn) -> list[Step]:
    steps = []
    clock = 0
    for _ in range(draw(st.integers(4, 14))):
        clock += draw(st.sampled_from(GAPS))
        kind = draw(st.sampled_from(["inbound", "send", "send"]))
        text = draw(st.sampled_from(TEXTS)) if kind == "inbound" else ""
        steps.append(
            (kind, draw(st.integers(0, 1)), draw(st.integers(0, 3)), text, clock)
        )
    return steps


@pytest.fixture(scope="module")
def numbers(shared_stack: Any, shared_worker: WorkerProcess) -> list[Number]:
    """Two numbers of one campaign, a lone US number and a short code."""
    kafka = shared_stack.client()
    campaign = f"model-{_marker()[:8]}"
    numbers = [
        Number(fresh_us_sender(), "long_code", "US", campaign),
        Number(fresh_us_sender(), "long_code", "US", campaign),
        Number(fresh_us_sender(), "long_code", "US"),
        Number(str(uuid.uuid4().int)[:5], "short_code", "US"),
    ]
    for number in numbers[:2]:
        registered(kafka, shared_worker, number.number, campaign_id=campaign)
    kafka.close()
    return numbers


@LIVE
@given(steps=scenarios())
def test_worker_decides_as_the_reference_model(
    kafka: KafkaClient, numbers: list[Number], steps: list[Step]
) -> None:
    scenario, model = Scenario.new(), Model()
    subscribers = [fresh_subscriber(), fresh_subscriber()]
    expected: dict[str, tuple[str, bool]] = {}
    previous = None
    for kind, who, which, text, seconds in steps:
        subscriber, number = subscribers[who], numbers[which]
        at = scenario.start + timedelta(seconds=seconds)
        if kind == "inbound":
            record = scenario.inbound(subscriber, number.number, text, seconds)
            if previous == "send":
                _settle(kafka, expected)
            kafka.inbound(record)
            if model_keyword_changes(text):
                kafka.applied(record)
            model.inbound(subscriber, number, text, at)
        else:
            record = scenario.send(number.number, subscriber, seconds)
            kafka.send(record)
            expected[record["request_id"]] = model.send(subscriber, number, at)
        previous = kind

    decisions = _settle(kafka, expected)

    actual = {rid: (d["status"], d["ack"]) for rid, d in decisions.items()}
    assert actual == expected


def model_keyword_changes(text: str) -> bool:
    return text.strip().lower() not in ("hello",)


def _settle(
    kafka: KafkaClient, expected: dict[str, tuple[str, bool]]
) -> dict[str, dict[str, Any]]:
    """Wait until every send so far is decided, before a later keyword."""
    ids = list(expected)
    kafka.wait_for(lambda: len(kafka.decisions(ids)) == len(ids), timeout=60)
    return kafka.decisions(ids)
