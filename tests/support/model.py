"""A plain reference model of SPEC section 3, written apart from app/rules.

It knows nothing of Kafka, pydantic or stopguard's classes: a dictionary of
opt-outs and a loop. The model check runs the same scenario through it and
through a real worker and compares every decision.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta

OPT_OUT_WORDS = {"STOP", "END", "QUIT", "CANCEL", "UNSUB", "STOP ALL"}
OPT_IN_WORDS = {"UNSTOP", "START"}
WINDOW = timedelta(minutes=5)
DND_COUNTRIES = {"US", "CA"}


def keyword(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = " ".join(folded.split())
    while words and (unicodedata.category(words[-1])[0] == "P" or words[-1] == " "):
        words = words[:-1]
    return words.upper()


@dataclass
class Number:
    number: str
    kind: str  # long_code | toll_free | short_code
    country: str
    campaign: str | None = None
    dnd: bool | None = None

    def enforces(self) -> bool:
        if self.dnd is not None:
            return self.dnd
        return self.kind != "short_code" and self.country in DND_COUNTRIES

    def scope(self) -> str:
        if self.campaign:
            return f"campaign:{self.campaign}"
        return f"number:{self.number}"

    def guarded_by(self) -> list[str]:
        scopes = [f"number:{self.number}"]
        if self.campaign:
            scopes.append(f"campaign:{self.campaign}")
        return scopes


@dataclass
class OptOut:
    at: datetime
    ack_taken: bool = False


@dataclass
class Model:
    """Consent per (subscriber, scope), judged in the order of calls."""

    opt_outs: dict[tuple[str, str], OptOut] = field(default_factory=dict)

    def inbound(self, subscriber: str, number: Number, text: str, at: datetime) -> None:
        word = keyword(text)
        key = (subscriber, number.scope())
        current = self.opt_outs.get(key)
        if word in OPT_OUT_WORDS:
            if current is None or current.at <= at:
                self.opt_outs[key] = OptOut(at)
        elif word in OPT_IN_WORDS and current is not None and current.at <= at:
            del self.opt_outs[key]

    def send(self, subscriber: str, sender: Number, at: datetime) -> tuple[str, bool]:
        """("approved" | "rejected", ack) for a send judged now."""
        if not sender.enforces():
            return "approved", False
        held = [
            self.opt_outs[(subscriber, scope)]
            for scope in sender.guarded_by()
            if (subscriber, scope) in self.opt_outs
        ]
        if not held:
            return "approved", False
        if all(not o.ack_taken and o.at <= at <= o.at + WINDOW for o in held):
            for opt_out in held:
                opt_out.ack_taken = True
            return "approved", True
        return "rejected", False
