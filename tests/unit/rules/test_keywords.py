from __future__ import annotations

import pytest

from app.rules.keywords import EXTENDED, STANDARD, normalise


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("  stop. ", "STOP", id="spaces-and-period"),
        pytest.param("Stop!", "STOP", id="exclamation"),
        pytest.param("STOP  ALL", "STOP ALL", id="inner-space-run"),
        pytest.param("stop\tall\n", "STOP ALL", id="tab-and-newline"),
        pytest.param("ＳＴＯＰ", "STOP", id="fullwidth-letters"),
        pytest.param("stop。", "STOP", id="ideographic-full-stop"),
        pytest.param("Stop?!...", "STOP", id="punctuation-run"),
        pytest.param("¡stop", "¡STOP", id="leading-punctuation-kept"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    "text",
    ["STOP", "end", "Quit", "cancel.", "UNSUB", "stop all", "  Stop  All!  "],
)
def test_standard_opt_out_words(text: str) -> None:
    assert STANDARD.classify(text) == ("opt_out", normalise(text))


@pytest.mark.parametrize("text", ["UNSTOP", "start", "Start!"])
def test_standard_opt_in_words(text: str) -> None:
    assert STANDARD.classify(text) == ("opt_in", normalise(text))


@pytest.mark.parametrize(
    "text",
    [
        "please stop texting me",
        "stop it",
        "STOPP",
        "S T O P",
        "help",
        "revoke",
        "",
    ],
)
def test_other_text_is_no_keyword_in_the_standard_set(text: str) -> None:
    assert STANDARD.classify(text) is None


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("REVOKE", "opt_out"),
        ("opt out", "opt_out"),
        ("OptOut", "opt_out"),
        ("unsubscribe", "opt_out"),
        ("STOPALL", "opt_out"),
        ("stop", "opt_out"),
        ("help", "help"),
        ("Info?", "help"),
        ("start", "opt_in"),
    ],
)
def test_extended_set(text: str, action: str) -> None:
    match = EXTENDED.classify(text)
    assert match is not None and match[0] == action


def test_custom_words_extend_a_policy_and_rename_it() -> None:
    policy = STANDARD.with_words("standard+ca", {"opt_out": ["Arrêt", "ARRET"]})

    assert policy.classify("arrêt!") == ("opt_out", "ARRÊT")
    assert policy.classify("ARRET") == ("opt_out", "ARRET")
    assert policy.name == "standard+ca"
    assert STANDARD.classify("ARRET") is None
