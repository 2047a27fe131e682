"""Rebuilding opt-outs from consent events, as export and status do."""

from __future__ import annotations

import io
from typing import Any

from app.tools.consent_log import rebuild, write_export

SUBSCRIBER = "+14155550100"


def event(
    sequence: int | None, action: str, at: str, scope: str = "campaign:spring"
) -> dict[str, Any]:
    return {
        "event_id": f"m{sequence}:{action}",
        "subscriber": SUBSCRIBER,
        "scope": scope,
        "action": action,
        "keyword": {"opt_out": "STOP", "opt_in": "START"}.get(action, "HELP"),
        "message_id": f"m{sequence}",
        "number": "+12015550101",
        "at": at,
        "policy": "standard",
        "sequence": sequence,
    }


def test_events_are_replayed_in_sequence_order_not_arrival_order() -> None:
    events = [
        event(2, "opt_in", "2025-04-01T10:05:00Z"),
        event(3, "opt_out", "2025-04-01T10:10:00Z"),
        event(1, "opt_out", "2025-04-01T10:00:00Z"),
    ]

    record = rebuild(events)[SUBSCRIBER]

    assert record.opt_outs["campaign:spring"].opted_out_at == "2025-04-01T10:10:00Z"
    assert [e["sequence"] for e in record.history] == [1, 2, 3]


def test_an_opt_in_older_than_the_opt_out_does_not_clear_it() -> None:
    events = [
        event(1, "opt_out", "2025-04-01T10:00:00Z"),
        event(2, "opt_in", "2025-04-01T09:00:00Z"),
    ]

    assert "campaign:spring" in rebuild(events)[SUBSCRIBER].opt_outs


def test_an_opt_in_clears_only_its_own_scope() -> None:
    events = [
        event(1, "opt_out", "2025-04-01T10:00:00Z"),
        event(2, "opt_out", "2025-04-01T10:01:00Z", scope="number:52020"),
        event(3, "opt_in", "2025-04-01T10:02:00Z"),
    ]

    assert list(rebuild(events)[SUBSCRIBER].opt_outs) == ["number:52020"]


def test_redelivered_events_count_once() -> None:
    stop = event(1, "opt_out", "2025-04-01T10:00:00Z")

    record = rebuild([stop, dict(stop)])[SUBSCRIBER]

    assert len(record.history) == 1


def test_export_writes_one_row_per_scope_in_force() -> None:
    events = [
        event(1, "opt_out", "2025-04-01T10:00:00Z"),
        event(2, "help", "2025-04-01T10:01:00Z"),
    ]
    out = io.StringIO()

    rows = write_export(rebuild(events).values(), out)

    assert rows == 1
    assert out.getvalue().splitlines() == [
        "subscriber,scope,opted_out_at,keyword,number",
        f"{SUBSCRIBER},campaign:spring,2025-04-01T10:00:00Z,STOP,+12015550101",
    ]
