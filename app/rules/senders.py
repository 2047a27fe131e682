"""The number registry (`sms.numbers`) as a plain lookup."""

from __future__ import annotations

from app.models import NumberRegistration
from app.rules.numbers import SenderProfile, classify_sender


class SenderDirectory:
    """Registered sender numbers; unregistered ones are classified on sight."""

    def __init__(self) -> None:
        self._registrations: dict[str, NumberRegistration] = {}

    def __len__(self) -> int:
        return len(self._registrations)

    def register(self, number: str, registration: NumberRegistration | None) -> None:
        """Store a registration, or forget the number when given None (a tombstone)."""
        if registration is None:
            self._registrations.pop(number, None)
        else:
            self._registrations[number] = registration

    def profile(self, number: str) -> SenderProfile:
        """How sends from `number` are judged: its registration wins."""
        registration = self._registrations.get(number)
        if registration is None:
            return classify_sender(number)
        return SenderProfile(
            number=number,
            type=registration.type,
            country=registration.country,
            campaign_id=registration.campaign_id,
            dnd=registration.dnd,
        )
