"""Keyword matching (SPEC 3.1): the whole message is the keyword."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

ConsentAction = Literal["opt_out", "opt_in", "help"]

STANDARD_OPT_OUT = ("STOP", "END", "QUIT", "CANCEL", "UNSUB", "STOP ALL")
STANDARD_OPT_IN = ("UNSTOP", "START")
# Words US rules treat as revocation since April 2025, plus the help words.
EXTENDED_OPT_OUT = ("REVOKE", "OPT OUT", "OPTOUT", "UNSUBSCRIBE", "STOPALL")
EXTENDED_HELP = ("HELP", "INFO")

_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Fold a message to its keyword form: NFKC, casefold, one space, no tail."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    collapsed = _SPACES.sub(" ", folded).strip()
    return _strip_trailing_punctuation(collapsed).upper()


def _strip_trailing_punctuation(text: str) -> str:
    end = len(text)
    while end and (_is_punctuation(text[end - 1]) or text[end - 1].isspace()):
        end -= 1
    return text[:end]


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


@dataclass(frozen=True)
class KeywordPolicy:
    """Which normalised words mean what. `name` is recorded with every event."""

    name: str
    actions: Mapping[str, ConsentAction]

    def classify(self, text: str) -> tuple[ConsentAction, str] | None:
        """The action and normalised keyword of a message, or None for plain text."""
        keyword = normalise(text)
        action = self.actions.get(keyword)
        return (action, keyword) if action else None

    def with_words(
        self, name: str, words: Mapping[ConsentAction, Iterable[str]]
    ) -> KeywordPolicy:
        """A policy extended by custom words (for instance ARRET for Canada)."""
        actions = dict(self.actions)
        for action, group in words.items():
            actions.update({normalise(word): action for word in group})
        return KeywordPolicy(name, actions)


def _policy(
    name: str,
    opt_out: Iterable[str],
    opt_in: Iterable[str],
    help_words: Iterable[str] = (),
) -> KeywordPolicy:
    empty = KeywordPolicy(name, {})
    return empty.with_words(
        name, {"opt_out": opt_out, "opt_in": opt_in, "help": help_words}
    )


STANDARD = _policy("standard", STANDARD_OPT_OUT, STANDARD_OPT_IN)
EXTENDED = _policy(
    "extended",
    STANDARD_OPT_OUT + EXTENDED_OPT_OUT,
    STANDARD_OPT_IN,
    EXTENDED_HELP,
)
BUILTIN_POLICIES = {policy.name: policy for policy in (STANDARD, EXTENDED)}
