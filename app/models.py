"""The wire contract of SPEC section 2, as pydantic models.

Field names on the wire are fixed; `from` and `to` are Python keywords or
ambiguous, so the models name them after their role and alias the wire name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from app.rules.keywords import ConsentAction
from app.rules.numbers import NumberType

# A message body beyond this is not an SMS; it goes to the dead-letter topic.
MAX_TEXT_LENGTH = 65536

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]
PhoneField = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
DecisionStatus = Literal["approved", "rejected"]
DecisionReason = Literal["opted_out", "invalid_source", "invalid_destination"]


class WireModel(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True, strict=True, frozen=True, extra="ignore"
    )

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def format_time(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, as every stopguard output writes it."""
    if moment is None:
        return None
    return utc(moment).isoformat().replace("+00:00", "Z")


class InboundMessage(WireModel):
    message_id: Identifier
    subscriber: PhoneField = Field(alias="from")
    number: PhoneField = Field(alias="to")
    text: Text
    received_at: Annotated[AwareDatetime, Field(strict=False)]


class SendRequest(WireModel):
    request_id: Identifier
    sender: PhoneField = Field(alias="from")
    subscriber: PhoneField = Field(alias="to")
    text: Text
    requested_at: Annotated[AwareDatetime, Field(strict=False)]


class ConsentImport(WireModel):
    """One row of an imported opt-out list, on its way to the worker."""

    import_id: Identifier
    subscriber: PhoneField
    scope: Annotated[str, StringConstraints(pattern=r"^(campaign|number):.+$")]
    at: Annotated[AwareDatetime, Field(strict=False)]
    source: Annotated[str, StringConstraints(max_length=256)] = "import"


class NumberRegistration(WireModel):
    number: PhoneField
    type: NumberType
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    campaign_id: Identifier | None = None
    dnd: bool | None = None


class Decision(WireModel):
    request_id: str
    sender: str = Field(alias="from")
    subscriber: str = Field(alias="to")
    text: str
    requested_at: str
    status: DecisionStatus
    error_code: int | None
    reason: DecisionReason | None
    scope: str
    ack: bool
    opted_out_at: str | None
    decided_at: str
    # Optional additions for the auditor: how the sender was judged, and the
    # position of this decision among the subscriber's consent changes.
    enforced: bool | None = None
    campaign_id: str | None = None
    sequence: int | None = None

    def same_outcome(self, other: Decision) -> bool:
        """Two decisions agree when everything but the decision time matches."""
        mine = self.model_dump(exclude={"decided_at"})
        return mine == other.model_dump(exclude={"decided_at"})


class ConsentEvent(WireModel):
    event_id: str
    subscriber: str
    scope: str
    action: ConsentAction
    keyword: str
    message_id: str
    number: str
    at: str
    # Optional additions: the keyword policy that judged the message, and its
    # position among the subscriber's consent changes and decisions.
    policy: str | None = None
    sequence: int | None = None


class DeadLetter(WireModel):
    source_topic: str
    partition: int
    offset: int
    key: str | None
    error: str
    raw: str
    raw_encoding: Literal["text", "base64"] = "text"
