from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import ConsentImport, InboundMessage, SendRequest
from app.rules.consent import (
    ACK_WINDOW,
    HISTORY_LIMIT,
    SubscriberConsent,
    apply_import,
    apply_inbound,
    decide,
    invalid_number_decision,
    restore_decision,
)
from app.rules.keywords import STANDARD
from app.rules.numbers import SenderProfile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SUBSCRIBER = "+14155550100"
CAMPAIGN_A = SenderProfile("+12015550101", "long_code", "US", campaign_id="A")
CAMPAIGN_A2 = SenderProfile("+12015550102", "long_code", "US", campaign_id="A")
LONE = SenderProfile("+12015550103", "long_code", "US")
SHORT = SenderProfile("52020", "short_code", None)
_ids = iter(range(1_000_000))


def consent() -> SubscriberConsent:
    return SubscriberConsent(subscriber=SUBSCRIBER)


def text(
    state: SubscriberConsent, profile: SenderProfile, body: str, at: timedelta
) -> str | None:
    message = InboundMessage(
        message_id=f"m{next(_ids)}",
        subscriber=SUBSCRIBER,
        number=profile.number,
        text=body,
        received_at=T0 + at,
    )
    event = apply_inbound(state, message, profile, STANDARD)
    return event.action if event else None


def send(state: SubscriberConsent, profile: SenderProfile, at: timedelta) -> tuple:
    request = SendRequest(
        request_id=f"r{next(_ids)}",
        sender=profile.number,
        subscriber=SUBSCRIBER,
        text="hi",
        requested_at=T0 + at,
    )
    decision = decide(state, request, profile, decided_at=T0 + at)
    return decision.status, decision.error_code, decision.ack


APPROVED = ("approved", None, False)
ACK = ("approved", None, True)
REJECTED = ("rejected", 200, False)


def test_no_opt_out_means_approved() -> None:
    assert send(consent(), LONE, timedelta(0)) == APPROVED


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        pytest.param(timedelta(0), ACK, id="at-the-stop"),
        pytest.param(timedelta(minutes=2), ACK, id="inside"),
        pytest.param(ACK_WINDOW, ACK, id="last-instant"),
        pytest.param(ACK_WINDOW + timedelta(microseconds=1), REJECTED, id="after"),
        pytest.param(-timedelta(microseconds=1), REJECTED, id="stamped-before"),
    ],
)
def test_acknowledgement_window_boundaries(offset: timedelta, expected: tuple) -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))

    assert send(state, LONE, offset) == expected


def test_only_one_acknowledgement_per_opt_out() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))

    outcomes = [send(state, LONE, timedelta(seconds=s)) for s in (10, 20, 30)]

    assert outcomes == [ACK, REJECTED, REJECTED]


def test_each_new_stop_opens_a_new_window() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))
    assert send(state, LONE, timedelta(seconds=10)) == ACK
    text(state, LONE, "stop", timedelta(minutes=30))

    assert send(state, LONE, timedelta(minutes=31)) == ACK
    assert send(state, LONE, timedelta(minutes=32)) == REJECTED


def test_a_late_older_stop_does_not_reopen_a_window() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(minutes=10))
    assert send(state, LONE, timedelta(minutes=11)) == ACK
    text(state, LONE, "STOP", timedelta(minutes=1))

    assert send(state, LONE, timedelta(minutes=12)) == REJECTED


def test_campaign_opt_out_blocks_every_number_of_the_campaign() -> None:
    state = consent()
    assert text(state, CAMPAIGN_A, "STOP", timedelta(0)) == "opt_out"

    assert send(state, CAMPAIGN_A2, timedelta(hours=1)) == REJECTED
    assert send(state, LONE, timedelta(hours=1)) == APPROVED
    assert list(state.opt_outs) == ["campaign:A"]


def test_number_scope_opt_out_survives_joining_a_campaign() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))
    joined = SenderProfile(LONE.number, "long_code", "US", campaign_id="B")

    assert send(state, joined, timedelta(hours=1)) == REJECTED


def test_opt_in_clears_only_its_own_scope() -> None:
    state = consent()
    text(state, CAMPAIGN_A, "STOP", timedelta(0))
    text(state, LONE, "STOP", timedelta(0))
    assert text(state, CAMPAIGN_A2, "START", timedelta(minutes=10)) == "opt_in"

    assert send(state, CAMPAIGN_A, timedelta(minutes=11)) == APPROVED
    assert send(state, LONE, timedelta(minutes=11)) == REJECTED


def test_an_opt_in_older_than_the_opt_out_does_not_undo_it() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(minutes=10))
    text(state, LONE, "UNSTOP", timedelta(minutes=5))

    assert send(state, LONE, timedelta(minutes=20)) == REJECTED


def test_non_enforcing_numbers_record_but_do_not_block() -> None:
    state = consent()
    assert text(state, SHORT, "STOP", timedelta(0)) == "opt_out"
    assert send(state, SHORT, timedelta(hours=1)) == APPROVED

    dnd_on = SenderProfile("52020", "short_code", None, dnd=True)
    assert send(state, dnd_on, timedelta(hours=1)) == REJECTED


def test_both_scopes_must_allow_the_acknowledgement() -> None:
    state = consent()
    text(state, CAMPAIGN_A, "STOP", timedelta(0))
    # The number's own opt-out is older than its window.
    number_scope = SenderProfile(CAMPAIGN_A.number, "long_code", "US")
    text(state, number_scope, "STOP", -timedelta(hours=1))

    assert send(state, CAMPAIGN_A, timedelta(seconds=5)) == REJECTED


def test_plain_text_and_redelivery_change_nothing() -> None:
    state = consent()
    assert text(state, LONE, "please stop texting me", timedelta(0)) is None
    message = InboundMessage(
        message_id="once",
        subscriber=SUBSCRIBER,
        number=LONE.number,
        text="STOP",
        received_at=T0,
    )
    first = apply_inbound(state, message, LONE, STANDARD)
    assert send(state, LONE, timedelta(seconds=5)) == ACK
    again = apply_inbound(state, message, LONE, STANDARD)

    assert again == first
    assert send(state, LONE, timedelta(seconds=6)) == REJECTED


def test_history_is_bounded_but_opt_outs_are_kept() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))
    for minute in range(HISTORY_LIMIT + 5):
        text(state, CAMPAIGN_A, "STOP", timedelta(minutes=minute))

    assert len(state.history) == HISTORY_LIMIT
    assert "number:" + LONE.number in state.opt_outs


def request(profile: SenderProfile, at: timedelta, request_id: str) -> SendRequest:
    return SendRequest(
        request_id=request_id,
        sender=profile.number,
        subscriber=SUBSCRIBER,
        text="hi",
        requested_at=T0 + at,
    )


def test_decisions_record_how_many_consent_changes_they_follow() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))
    decision = decide(state, request(LONE, timedelta(seconds=1), "r"), LONE, T0)
    text(state, LONE, "START", timedelta(minutes=1))

    assert [e.sequence for e in state.history] == [1, 2]
    assert decision.sequence == 1


def test_the_request_that_took_the_acknowledgement_keeps_it_when_judged_again() -> None:
    state = consent()
    text(state, LONE, "STOP", timedelta(0))
    ack = request(LONE, timedelta(seconds=10), "the-ack")
    first = decide(state, ack, LONE, T0)
    other = decide(state, request(LONE, timedelta(seconds=11), "other"), LONE, T0)
    again = decide(state, ack, LONE, T0 + timedelta(hours=1))

    assert first.ack and again.ack and not other.ack
    assert again.same_outcome(first)


def test_restoring_a_recorded_acknowledgement_mends_lost_state() -> None:
    recorded_state = consent()
    text(recorded_state, LONE, "STOP", timedelta(0))
    lost_state = recorded_state.model_copy(deep=True)
    ack = decide(recorded_state, request(LONE, timedelta(seconds=10), "a"), LONE, T0)

    assert restore_decision(lost_state, ack) is True
    assert restore_decision(lost_state, ack) is False
    assert send(lost_state, LONE, timedelta(seconds=20)) == REJECTED


def test_imported_opt_outs_block_without_an_acknowledgement() -> None:
    state = consent()
    row = ConsentImport(
        import_id="imp-1",
        subscriber=SUBSCRIBER,
        scope=f"number:{LONE.number}",
        at=T0,
        source="old-provider",
    )
    event = apply_import(state, row)

    assert (event.action, event.keyword, event.policy) == (
        "opt_out",
        "IMPORT",
        "import:old-provider",
    )
    assert send(state, LONE, timedelta(seconds=1)) == REJECTED
    assert apply_import(state, row) == event


@pytest.mark.parametrize(
    ("source_valid", "code", "reason"),
    [(False, 40, "invalid_source"), (True, 50, "invalid_destination")],
    ids=["bad-sender", "bad-destination"],
)
def test_invalid_numbers(source_valid: bool, code: int, reason: str) -> None:
    request = SendRequest(
        request_id="r", sender="x", subscriber="y", text="", requested_at=T0
    )
    decision = invalid_number_decision(
        request, source_valid=source_valid, decided_at=T0
    )

    assert (decision.status, decision.error_code, decision.reason) == (
        "rejected",
        code,
        reason,
    )
