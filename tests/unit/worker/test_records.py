from __future__ import annotations

import base64

import pytest

from app.errors import InvalidRecord
from app.models import SendRequest
from app.worker.records import dead_letter, parse

GOOD = (
    b'{"request_id": "r1", "from": "+12015550100", "to": "+14155550100", '
    b'"text": "hi", "requested_at": "2026-01-01T00:00:00Z"}'
)


def test_a_good_request_parses() -> None:
    request = parse(SendRequest, GOOD)

    assert (request.request_id, request.sender, request.subscriber) == (
        "r1",
        "+12015550100",
        "+14155550100",
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(None, "tombstone", id="tombstone"),
        pytest.param(b"{", "not valid JSON", id="broken-json"),
        pytest.param(b'"text"', "SendRequest", id="json-string"),
        pytest.param(GOOD.replace(b'"r1"', b"1"), "request_id", id="int-id"),
        pytest.param(GOOD.replace(b'"r1"', b'""'), "request_id", id="empty-id"),
        pytest.param(GOOD.replace(b"Z", b""), "requested_at", id="naive-time"),
        pytest.param(
            GOOD.replace(b'"hi"', b'"' + b"x" * 70000 + b'"'), "text", id="huge-text"
        ),
    ],
)
def test_bad_records_say_what_is_wrong(raw: bytes | None, fragment: str) -> None:
    with pytest.raises(InvalidRecord, match=fragment):
        parse(SendRequest, raw)


def test_dead_letters_keep_binary_values_as_base64() -> None:
    letter = dead_letter("t", 1, 2, b"k", b"\xff\x00", "broken")

    assert letter.raw_encoding == "base64"
    assert base64.b64decode(letter.raw) == b"\xff\x00"
    assert (letter.source_topic, letter.partition, letter.offset, letter.key) == (
        "t",
        1,
        2,
        "k",
    )
