"""A subscriber's consent and the judgement of sends (SPEC 3.2 and 3.3).

`SubscriberConsent` is the whole state stopguard keeps for one subscriber.
`apply_inbound` turns a keyword into a consent change; `decide` judges a send
against the state. Both are pure: the worker, the audit replay and the
reference model in the tests call the same two functions.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from app.models import (
    ConsentEvent,
    ConsentImport,
    Decision,
    InboundMessage,
    SendRequest,
    format_time,
)
from app.rules.keywords import ConsentAction, KeywordPolicy
from app.rules.numbers import SenderProfile

ACK_WINDOW = timedelta(minutes=5)
# Opt-outs themselves are never trimmed; only the history shown by `status`
# is, and the full history stays in the consent-events topic.
HISTORY_LIMIT = 100

OPTED_OUT = 200
INVALID_SOURCE = 40
INVALID_DESTINATION = 50


class _State(BaseModel):
    model_config = ConfigDict(frozen=False, extra="ignore")


class ScopeOptOut(_State):
    """An opt-out in force in one scope, with its acknowledgement allowance."""

    opted_out_at: datetime
    message_id: str
    keyword: str
    number: str
    ack_used: bool = False
    # The request that took the acknowledgement: judged again after a crash
    # (its decision record lost), it is given the same acknowledgement.
    ack_request_id: str | None = None

    def allows_ack(self, request: SendRequest) -> bool:
        if self.ack_used:
            return self.ack_request_id == request.request_id
        at = request.requested_at
        return self.opted_out_at <= at <= self.opted_out_at + ACK_WINDOW


class SubscriberConsent(_State):
    """Everything stopguard knows about one subscriber's consent."""

    subscriber: str
    opt_outs: dict[str, ScopeOptOut] = {}
    history: list[ConsentEvent] = []
    # Counts consent changes; each decision records how many it was judged
    # after, so that an auditor can replay them in the worker's order.
    sequence: int = 0

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SubscriberConsent:
        return cls.model_validate_json(raw)

    def has_seen(self, message_id: str) -> bool:
        return any(event.message_id == message_id for event in self.history)


def scope_of(profile: SenderProfile) -> str:
    """The scope a keyword sent to this number applies to."""
    if profile.campaign_id:
        return f"campaign:{profile.campaign_id}"
    return f"number:{profile.number}"


def scopes_guarding(profile: SenderProfile) -> list[str]:
    """Every scope whose opt-out blocks a send from this number."""
    scopes = [f"number:{profile.number}"]
    if profile.campaign_id:
        scopes.insert(0, f"campaign:{profile.campaign_id}")
    return scopes


def apply_inbound(
    consent: SubscriberConsent,
    message: InboundMessage,
    profile: SenderProfile,
    policy: KeywordPolicy,
) -> ConsentEvent | None:
    """Apply a subscriber's message; the consent event it causes, if any.

    A message seen before (a redelivery) changes nothing and yields its
    original event again, so that at-least-once delivery repeats, never forks.
    """
    match = policy.classify(message.text)
    if match is None:
        return None
    for event in consent.history:
        if event.message_id == message.message_id:
            return event

    action, keyword = match
    scope = scope_of(profile)
    if action == "opt_out":
        opt_out = ScopeOptOut(
            opted_out_at=message.received_at,
            message_id=message.message_id,
            keyword=keyword,
            number=profile.number,
        )
        _record_opt_out(consent, scope, opt_out)
    elif action == "opt_in":
        _clear_opt_out(consent, scope, message.received_at)
    event = _event(
        consent,
        message.message_id,
        scope,
        action,
        keyword,
        number=profile.number,
        at=message.received_at,
        policy=policy.name,
    )
    return _remember(consent, event)


IMPORT_KEYWORD = "IMPORT"


def apply_import(consent: SubscriberConsent, row: ConsentImport) -> ConsentEvent:
    """Record an opt-out taken over from another provider's list.

    It blocks like any opt-out but opens no acknowledgement window: the
    subscriber was acknowledged, if at all, by the provider that got the STOP.
    """
    for event in consent.history:
        if event.message_id == row.import_id:
            return event
    number = (
        row.scope.removeprefix("number:") if row.scope.startswith("number:") else ""
    )
    opt_out = ScopeOptOut(
        opted_out_at=row.at,
        message_id=row.import_id,
        keyword=IMPORT_KEYWORD,
        number=number,
        ack_used=True,
    )
    _record_opt_out(consent, row.scope, opt_out)
    event = _event(
        consent,
        row.import_id,
        row.scope,
        "opt_out",
        IMPORT_KEYWORD,
        number=number,
        at=row.at,
        policy=f"import:{row.source}",
    )
    return _remember(consent, event)


def _record_opt_out(
    consent: SubscriberConsent, scope: str, opt_out: ScopeOptOut
) -> None:
    current = consent.opt_outs.get(scope)
    # A keyword that arrives late must not reopen an older window.
    if current is not None and current.opted_out_at > opt_out.opted_out_at:
        return
    consent.opt_outs[scope] = opt_out


def _clear_opt_out(
    consent: SubscriberConsent, scope: str, received_at: datetime
) -> None:
    current = consent.opt_outs.get(scope)
    # An opt-in older than the opt-out in force does not undo it.
    if current is not None and current.opted_out_at <= received_at:
        del consent.opt_outs[scope]


def _event(
    consent: SubscriberConsent,
    message_id: str,
    scope: str,
    action: ConsentAction,
    keyword: str,
    *,
    number: str,
    at: datetime,
    policy: str,
) -> ConsentEvent:
    consent.sequence += 1
    return ConsentEvent(
        event_id=f"{message_id}:{action}",
        subscriber=consent.subscriber,
        scope=scope,
        action=action,
        keyword=keyword,
        message_id=message_id,
        number=number,
        at=format_time(at) or "",
        policy=policy,
        sequence=consent.sequence,
    )


def _remember(consent: SubscriberConsent, event: ConsentEvent) -> ConsentEvent:
    consent.history.append(event)
    del consent.history[:-HISTORY_LIMIT]
    return event


def decide(
    consent: SubscriberConsent,
    request: SendRequest,
    profile: SenderProfile,
    decided_at: datetime,
) -> Decision:
    """Judge a send from `profile` to the consent's subscriber (valid numbers)."""
    in_force = _opt_outs_in_force(consent, profile)
    if not in_force:
        return _decision(consent, request, profile, decided_at, scope_of(profile))

    scope, opt_out = max(in_force, key=lambda item: item[1].opted_out_at)
    if all(o.allows_ack(request) for _, o in in_force):
        for _, held in in_force:
            held.ack_used = True
            held.ack_request_id = request.request_id
        return _decision(
            consent, request, profile, decided_at, scope, opt_out, ack=True
        )
    return _decision(
        consent, request, profile, decided_at, scope, opt_out, rejected=True
    )


def restore_decision(consent: SubscriberConsent, decision: Decision) -> bool:
    """Re-apply a recorded decision's effect on state; True if state changed.

    An acknowledgement is the only decision that changes consent. If a crash
    kept the decision's record but lost the state change, the state is
    mended before any later send is judged.
    """
    if not decision.ack:
        return False
    requested_at = datetime.fromisoformat(decision.requested_at)
    guarding = {f"number:{decision.sender}", f"campaign:{decision.campaign_id}"}
    changed = False
    for scope, opt_out in consent.opt_outs.items():
        window = (
            opt_out.opted_out_at <= requested_at <= opt_out.opted_out_at + ACK_WINDOW
        )
        if (
            scope in guarding
            and window
            and opt_out.ack_request_id != decision.request_id
        ):
            opt_out.ack_used = True
            opt_out.ack_request_id = decision.request_id
            changed = True
    return changed


def _opt_outs_in_force(
    consent: SubscriberConsent, profile: SenderProfile
) -> list[tuple[str, ScopeOptOut]]:
    if not profile.enforces_opt_outs:
        return []
    scopes = scopes_guarding(profile)
    return [(s, consent.opt_outs[s]) for s in scopes if s in consent.opt_outs]


def _decision(
    consent: SubscriberConsent,
    request: SendRequest,
    profile: SenderProfile,
    decided_at: datetime,
    scope: str,
    opt_out: ScopeOptOut | None = None,
    *,
    ack: bool = False,
    rejected: bool = False,
) -> Decision:
    return Decision(
        request_id=request.request_id,
        sender=request.sender,
        subscriber=request.subscriber,
        text=request.text,
        requested_at=format_time(request.requested_at) or "",
        status="rejected" if rejected else "approved",
        error_code=OPTED_OUT if rejected else None,
        reason="opted_out" if rejected else None,
        scope=scope,
        ack=ack,
        opted_out_at=format_time(opt_out.opted_out_at) if opt_out else None,
        decided_at=format_time(decided_at) or "",
        enforced=profile.enforces_opt_outs,
        campaign_id=profile.campaign_id,
        sequence=consent.sequence,
    )


def invalid_number_decision(
    request: SendRequest, *, source_valid: bool, decided_at: datetime
) -> Decision:
    """Reject a send whose sender (40) or destination (50) is not a number."""
    code, reason = (
        (INVALID_DESTINATION, "invalid_destination")
        if source_valid
        else (INVALID_SOURCE, "invalid_source")
    )
    return Decision(
        request_id=request.request_id,
        sender=request.sender,
        subscriber=request.subscriber,
        text=request.text,
        requested_at=format_time(request.requested_at) or "",
        status="rejected",
        error_code=code,
        reason=reason,  # type: ignore[arg-type]
        scope=f"number:{request.sender}",
        ack=False,
        opted_out_at=None,
        decided_at=format_time(decided_at) or "",
    )
