"""Phone numbers: parsing, classification and the DND rule (SPEC 3.4)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

NumberType = Literal["long_code", "toll_free", "short_code"]

# Short codes are 3 to 8 digits depending on the country (US: 5 or 6).
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
_DND_COUNTRIES = frozenset({"US", "CA"})


@dataclass(frozen=True)
class SenderProfile:
    """What a sender number is, from its registration or from the number itself."""

    number: str
    type: NumberType
    country: str | None
    campaign_id: str | None = None
    dnd: bool | None = None

    @property
    def enforces_opt_outs(self) -> bool:
        """Whether sends from this number honour opt-outs (the DND rule)."""
        if self.dnd is not None:
            return self.dnd
        if self.type == "short_code":
            return False
        return self.country in _DND_COUNTRIES


@lru_cache(maxsize=65536)
def subscriber_number(raw: str) -> str | None:
    """The E.164 form of a subscriber's number, or None if it is not one."""
    if not raw.startswith("+"):
        return None
    try:
        parsed = phonenumbers.parse(raw, None)
    except NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def sender_number(raw: str) -> str | None:
    """Our number in canonical form: a short code's digits or an E.164 number."""
    if _SHORT_CODE.fullmatch(raw):
        return raw
    return subscriber_number(raw)


@lru_cache(maxsize=65536)
def classify_sender(number: str) -> SenderProfile:
    """Classify an unregistered sender from phone-number metadata alone."""
    if _SHORT_CODE.fullmatch(number):
        return SenderProfile(number, "short_code", None)
    parsed = phonenumbers.parse(number, None)
    country = phonenumbers.region_code_for_number(parsed)
    toll_free = phonenumbers.number_type(parsed) == PhoneNumberType.TOLL_FREE
    return SenderProfile(number, "toll_free" if toll_free else "long_code", country)
