"""One scenario per rule of SPEC section 3, through a real broker and worker."""

from __future__ import annotations

import uuid

import pytest

from tests.support.kafka import KafkaClient, Scenario, registered
from tests.support.numbers import fresh_number, fresh_subscriber, fresh_us_sender
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


def test_stop_keyword_variants_all_opt_out(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    sender = fresh_us_sender()
    texts = ["  stop. ", "Stop!", "STOP  ALL", "ＳＴＯＰ", "cancel", "Unsub?"]
    subscribers = [fresh_subscriber() for _ in texts]
    stops = [
        scenario.inbound(subscriber, sender, text, 0)
        for subscriber, text in zip(subscribers, texts, strict=True)
    ]
    for stop in stops:
        kafka.inbound(stop)
    for stop in stops:
        kafka.applied(stop)
    sends = [scenario.send(sender, subscriber, 400) for subscriber in subscribers]

    for send in sends:
        kafka.send(send)
    decisions = kafka.await_decisions(sends)

    assert {d["status"] for d in decisions.values()} == {"rejected"}
    assert {d["error_code"] for d in decisions.values()} == {200}
    keywords = [kafka.consent_events(s)[0]["keyword"] for s in subscribers]
    assert keywords == ["STOP", "STOP", "STOP ALL", "STOP", "CANCEL", "UNSUB"]


def test_plain_text_changes_nothing(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    sender, subscriber = fresh_us_sender(), fresh_subscriber()
    kafka.inbound(scenario.inbound(subscriber, sender, "please stop texting me", 0))
    send = scenario.send(sender, subscriber, 10)
    kafka.send(send)

    decision = kafka.await_decisions([send])[send["request_id"]]

    assert decision["status"] == "approved"
    assert kafka.consent_events(subscriber) == []


def test_one_acknowledgement_inside_five_minutes(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    sender, subscriber = fresh_us_sender(), fresh_subscriber()
    before = scenario.send(sender, subscriber, -30)
    stop = scenario.inbound(subscriber, sender, "STOP", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    ack = scenario.send(sender, subscriber, 60, "You are unsubscribed")
    second = scenario.send(sender, subscriber, 120)
    # Stamped before the STOP but produced (and so decided) after it.
    for send in (ack, second, before):
        kafka.send(send)

    decisions = kafka.await_decisions([ack, second, before])

    assert decisions[ack["request_id"]]["ack"] is True
    assert decisions[ack["request_id"]]["status"] == "approved"
    assert decisions[ack["request_id"]]["opted_out_at"] == scenario.at(0)
    for late in (second, before):
        assert decisions[late["request_id"]]["status"] == "rejected"
        assert decisions[late["request_id"]]["error_code"] == 200
        assert decisions[late["request_id"]]["reason"] == "opted_out"


def test_window_closes_after_five_minutes(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    sender, subscriber = fresh_us_sender(), fresh_subscriber()
    stop = scenario.inbound(subscriber, sender, "STOP", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    late = scenario.send(sender, subscriber, 301)
    kafka.send(late)

    decision = kafka.await_decisions([late])[late["request_id"]]

    assert (decision["status"], decision["ack"]) == ("rejected", False)


def test_campaign_scope_covers_every_number_of_the_campaign(
    kafka: KafkaClient, shared_worker: WorkerProcess
) -> None:
    scenario = Scenario.new()
    campaign = f"camp-{uuid.uuid4().hex[:8]}"
    first = registered(kafka, shared_worker, fresh_us_sender(), campaign_id=campaign)
    second = registered(kafka, shared_worker, fresh_us_sender(), campaign_id=campaign)
    outsider = fresh_us_sender()
    subscriber = fresh_subscriber()
    stop = scenario.inbound(subscriber, first, "STOP", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    from_second = scenario.send(second, subscriber, 400)
    from_outsider = scenario.send(outsider, subscriber, 400)
    kafka.send(from_second)
    kafka.send(from_outsider)
    decisions = kafka.await_decisions([from_second, from_outsider])
    # A number that joins the campaign later is covered as well.
    joiner = registered(kafka, shared_worker, fresh_us_sender(), campaign_id=campaign)
    from_joiner = scenario.send(joiner, subscriber, 500)
    kafka.send(from_joiner)
    decisions |= kafka.await_decisions([from_joiner])

    assert kafka.consent_events(subscriber)[0]["scope"] == f"campaign:{campaign}"
    assert decisions[from_second["request_id"]]["scope"] == f"campaign:{campaign}"
    assert decisions[from_second["request_id"]]["error_code"] == 200
    assert decisions[from_joiner["request_id"]]["error_code"] == 200
    assert decisions[from_outsider["request_id"]]["status"] == "approved"


def test_number_scope_covers_that_number_alone(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    stopped, other = fresh_us_sender(), fresh_us_sender()
    subscriber = fresh_subscriber()
    stop = scenario.inbound(subscriber, stopped, "END", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    blocked = scenario.send(stopped, subscriber, 400)
    allowed = scenario.send(other, subscriber, 400)
    kafka.send(blocked)
    kafka.send(allowed)

    decisions = kafka.await_decisions([blocked, allowed])

    assert decisions[blocked["request_id"]]["scope"] == f"number:{stopped}"
    assert decisions[blocked["request_id"]]["status"] == "rejected"
    assert decisions[allowed["request_id"]]["status"] == "approved"


def test_start_clears_the_opt_out_of_its_scope(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    sender, subscriber = fresh_us_sender(), fresh_subscriber()
    kafka.inbound(scenario.inbound(subscriber, sender, "QUIT", 0))
    start = scenario.inbound(subscriber, sender, "Start", 600)
    kafka.inbound(start)
    kafka.applied(start)
    send = scenario.send(sender, subscriber, 700)
    kafka.send(send)

    decision = kafka.await_decisions([send])[send["request_id"]]
    kafka.wait_for(lambda: len(kafka.consent_events(subscriber)) == 2)

    assert decision["status"] == "approved"
    actions = [e["action"] for e in kafka.consent_events(subscriber)]
    assert actions == ["opt_out", "opt_in"]


@pytest.mark.parametrize(
    ("prefix", "length", "registration", "enforced"),
    [
        pytest.param("+1201", 12, None, True, id="us-long-code"),
        pytest.param("+1613", 12, None, True, id="canadian-long-code"),
        pytest.param("+1800", 12, None, True, id="us-toll-free"),
        pytest.param("+447", 13, None, False, id="uk-long-code"),
        pytest.param("", 5, None, False, id="short-code"),
        pytest.param(
            "",
            5,
            {"type": "short_code", "dnd": True},
            True,
            id="short-code-with-dnd-on",
        ),
        pytest.param("+1201", 12, {"dnd": False}, False, id="us-with-dnd-off"),
    ],
)
def test_dnd_rule_decides_which_numbers_enforce(
    kafka: KafkaClient,
    shared_worker: WorkerProcess,
    prefix: str,
    length: int,
    registration: dict[str, object] | None,
    enforced: bool,
) -> None:
    scenario = Scenario.new()
    sender = _sender(prefix, length)
    if registration is not None:
        country = "US"
        registered(kafka, shared_worker, sender, country=country, **registration)
    subscriber = fresh_subscriber()
    stop = scenario.inbound(subscriber, sender, "STOP", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    send = scenario.send(sender, subscriber, 400)
    kafka.send(send)

    decision = kafka.await_decisions([send])[send["request_id"]]

    assert decision["status"] == ("rejected" if enforced else "approved")
    # Recorded either way, so that turning DND on later honours it.
    kafka.wait_for(lambda: len(kafka.consent_events(subscriber)) == 1)


def _sender(prefix: str, length: int) -> str:
    if prefix:
        return fresh_number(prefix, length)
    return str(uuid.uuid4().int)[:length]


def test_turning_dnd_on_later_honours_earlier_opt_outs(
    kafka: KafkaClient, shared_worker: WorkerProcess
) -> None:
    scenario = Scenario.new()
    short_code = _sender("", 6)
    subscriber = fresh_subscriber()
    stop = scenario.inbound(subscriber, short_code, "STOP", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    registered(kafka, shared_worker, short_code, type="short_code", dnd=True)
    send = scenario.send(short_code, subscriber, 900)
    kafka.send(send)

    assert kafka.await_decisions([send])[send["request_id"]]["error_code"] == 200


@pytest.mark.parametrize(
    ("value", "error_fragment"),
    [
        pytest.param(b"{not json", "not valid JSON", id="broken-json"),
        pytest.param(
            {
                "from": "+12015550100",
                "to": "+14155550100",
                "text": "x",
                "requested_at": "2026-01-01T00:00:00Z",
            },
            "request_id",
            id="missing-id",
        ),
        pytest.param(
            {
                "request_id": 7,
                "from": "+12015550100",
                "to": "+14155550100",
                "text": "x",
                "requested_at": "2026-01-01T00:00:00Z",
            },
            "request_id",
            id="id-of-wrong-type",
        ),
        pytest.param(
            {
                "request_id": "r",
                "from": "+12015550100",
                "to": "+14155550100",
                "text": "x",
                "requested_at": "yesterday",
            },
            "requested_at",
            id="bad-timestamp",
        ),
        pytest.param(b"[1, 2, 3]", "SendRequest", id="json-array"),
        pytest.param(b"\xff\xfe\x00garbage", "JSON", id="binary"),
    ],
)
def test_unreadable_requests_become_dead_letters(
    kafka: KafkaClient, value: dict[str, object] | bytes, error_fragment: str
) -> None:
    marker = f"dl-{uuid.uuid4().hex}"
    kafka.produce(kafka.topics.requests, value, key=marker)

    kafka.wait_for(lambda: bool(kafka.dead_letters(marker)), what="a dead letter")

    letter = kafka.dead_letters(marker)[0]
    assert letter["source_topic"] == kafka.topics.requests
    assert error_fragment in letter["error"]
    assert letter["offset"] >= 0


def test_invalid_inbound_numbers_become_dead_letters(kafka: KafkaClient) -> None:
    scenario = Scenario.new()
    record = scenario.inbound("+1999", fresh_us_sender(), "STOP", 0)

    kafka.inbound(record, key=record["message_id"])
    kafka.wait_for(lambda: bool(kafka.dead_letters(record["message_id"])))

    assert "'from'" in kafka.dead_letters(record["message_id"])[0]["error"]


@pytest.mark.parametrize(
    ("sender", "subscriber", "code", "reason"),
    [
        pytest.param("+1999", None, 40, "invalid_source", id="bad-sender"),
        pytest.param(
            None, "not-a-number", 50, "invalid_destination", id="bad-destination"
        ),
        pytest.param(
            None, "52020", 50, "invalid_destination", id="short-code-destination"
        ),
    ],
)
def test_sends_with_invalid_numbers_are_rejected(
    kafka: KafkaClient,
    sender: str | None,
    subscriber: str | None,
    code: int,
    reason: str,
) -> None:
    send = Scenario.new().send(
        sender or fresh_us_sender(), subscriber or fresh_subscriber(), 0
    )
    kafka.send(send)

    decision = kafka.await_decisions([send])[send["request_id"]]

    assert (decision["status"], decision["error_code"], decision["reason"]) == (
        "rejected",
        code,
        reason,
    )


def test_unkeyed_records_are_judged_on_their_subscriber_partition(
    kafka: KafkaClient,
) -> None:
    scenario = Scenario.new()
    sender, subscriber = fresh_us_sender(), fresh_subscriber()
    kafka.inbound(scenario.inbound(subscriber, sender, "STOP", 0), key=None)
    kafka.wait_for(lambda: len(kafka.consent_events(subscriber)) == 1)
    sends = [scenario.send(sender, subscriber, 400 + i) for i in range(4)]
    for send in sends:
        kafka.send(send, key=None)

    decisions = kafka.await_decisions(sends)

    assert {d["error_code"] for d in decisions.values()} == {200}
