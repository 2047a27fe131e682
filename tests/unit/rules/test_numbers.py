from __future__ import annotations

import pytest

from app.models import NumberRegistration
from app.rules.numbers import classify_sender, sender_number, subscriber_number
from app.rules.senders import SenderDirectory


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("+14155550100", "+14155550100", id="us"),
        pytest.param("+447911123456", "+447911123456", id="uk-mobile"),
        pytest.param("14155550100", None, id="no-plus"),
        pytest.param("+1415555010", None, id="too-short"),
        pytest.param("+1999", None, id="nonsense"),
        pytest.param("52020", None, id="short-code-is-no-subscriber"),
        pytest.param("", None, id="empty"),
    ],
)
def test_subscriber_number(raw: str, expected: str | None) -> None:
    assert subscriber_number(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("52020", "52020"),
        ("123", "123"),
        ("12", None),
        ("+12015550100", "+12015550100"),
    ],
)
def test_sender_number(raw: str, expected: str | None) -> None:
    assert sender_number(raw) == expected


@pytest.mark.parametrize(
    ("number", "kind", "country", "enforces"),
    [
        pytest.param("+12015550123", "long_code", "US", True, id="us-long-code"),
        pytest.param("+16135550100", "long_code", "CA", True, id="ca-long-code"),
        pytest.param("+18005550199", "toll_free", "US", True, id="us-toll-free"),
        pytest.param("+18885550100", "toll_free", "US", True, id="us-toll-free-888"),
        pytest.param("+447400123456", "long_code", "GB", False, id="uk"),
        pytest.param("+33612345678", "long_code", "FR", False, id="france"),
        pytest.param("52020", "short_code", None, False, id="short-code"),
    ],
)
def test_unregistered_senders_follow_the_default_dnd_rule(
    number: str, kind: str, country: str | None, enforces: bool
) -> None:
    profile = classify_sender(number)

    assert (profile.type, profile.country) == (kind, country)
    assert profile.enforces_opt_outs is enforces


@pytest.mark.parametrize(
    ("registration", "enforces"),
    [
        pytest.param({"type": "short_code", "country": "US"}, False, id="short-us"),
        pytest.param(
            {"type": "short_code", "country": "US", "dnd": True},
            True,
            id="short-us-dnd-on",
        ),
        pytest.param(
            {"type": "long_code", "country": "US", "dnd": False},
            False,
            id="long-us-dnd-off",
        ),
        pytest.param({"type": "toll_free", "country": "CA"}, True, id="tf-ca"),
        pytest.param({"type": "long_code", "country": "GB"}, False, id="long-gb"),
        pytest.param(
            {"type": "long_code", "country": "GB", "dnd": True},
            True,
            id="long-gb-dnd-on",
        ),
    ],
)
def test_registration_decides_the_dnd_rule(
    registration: dict[str, object], enforces: bool
) -> None:
    directory = SenderDirectory()
    directory.register(
        "+12015550123",
        NumberRegistration.model_validate({"number": "+12015550123", **registration}),
    )

    assert directory.profile("+12015550123").enforces_opt_outs is enforces


def test_a_tombstone_forgets_the_registration() -> None:
    directory = SenderDirectory()
    registration = NumberRegistration(
        number="+12015550123", type="long_code", country="US", campaign_id="c1"
    )
    directory.register("+12015550123", registration)
    directory.register("+12015550123", None)

    assert directory.profile("+12015550123").campaign_id is None
    assert len(directory) == 0
