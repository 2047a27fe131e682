"""Consent state rebuilt from the consent-events topic, with no worker.

`stopguard export` and `stopguard status --from-topics` read
`sms.optout.events` and replay it per subscriber in `sequence` order, the
order the worker applied the changes. Events carry no acknowledgement
allowance, so `ack_used` is unknown here (None); the worker's API has it.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from rich.console import Console

from app.settings import Settings
from app.tools.clients import read_topics
from app.topics import load_catalog

EXPORT_COLUMNS = ("subscriber", "scope", "opted_out_at", "keyword", "number")


@dataclass(frozen=True)
class OptOut:
    """An opt-out in force in one scope, as the events tell it."""

    scope: str
    opted_out_at: str
    keyword: str
    number: str
    message_id: str


@dataclass
class ConsentRecord:
    """One subscriber's opt-outs in force and the events that led there."""

    subscriber: str
    opt_outs: dict[str, OptOut] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_body(self) -> dict[str, Any]:
        """The same shape as the worker's GET /subscribers/{subscriber}."""
        opt_outs = {
            scope: {
                "opted_out_at": o.opted_out_at,
                "keyword": o.keyword,
                "number": o.number,
                "ack_used": None,
            }
            for scope, o in self.opt_outs.items()
        }
        return {
            "subscriber": self.subscriber,
            "opt_outs": opt_outs,
            "history": self.history,
        }


def rebuild(events: Iterable[dict[str, Any]]) -> dict[str, ConsentRecord]:
    """Replay consent events (any order on input) into each subscriber's state."""
    records: dict[str, ConsentRecord] = {}
    for event in _in_applied_order(events):
        subscriber = event["subscriber"]
        record = records.get(subscriber)
        if record is None:
            record = records[subscriber] = ConsentRecord(subscriber)
        _apply(record, event)
    return records


def _in_applied_order(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    # A redelivered message yields its original event again, sequence and all:
    # keep one copy. Events without a sequence follow, by their time.
    unique: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for event in events:
        key = (event["subscriber"], event["event_id"], event.get("sequence"))
        unique.setdefault(key, event)
    return sorted(unique.values(), key=_order_key)


def _order_key(event: dict[str, Any]) -> tuple[str, bool, int, datetime]:
    sequence = event.get("sequence")
    return (
        event["subscriber"],
        sequence is None,
        sequence or 0,
        _parse_time(event["at"]),
    )


def _apply(record: ConsentRecord, event: dict[str, Any]) -> None:
    record.history.append(event)
    scope, at = event["scope"], event["at"]
    current = record.opt_outs.get(scope)
    if event["action"] == "opt_out":
        # Mirrors the worker: a late keyword never replaces a newer opt-out.
        if current is None or _parse_time(current.opted_out_at) <= _parse_time(at):
            record.opt_outs[scope] = OptOut(
                scope, at, event["keyword"], event["number"], event["message_id"]
            )
    elif event["action"] == "opt_in" and _clears(current, at):
        del record.opt_outs[scope]


def _clears(current: OptOut | None, at: str) -> bool:
    # An opt-in older than the opt-out in force does not undo it.
    if current is None:
        return False
    return _parse_time(at) >= _parse_time(current.opted_out_at)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def read_events(
    settings: Settings, subscriber: str | None = None
) -> list[dict[str, Any]]:
    """Every consent event on the topic, or those of one subscriber."""
    topic = load_catalog(settings).events
    events = []
    for message in read_topics(settings, [topic]):
        value = message.value()
        if not value:
            continue
        event = orjson.loads(value)
        if subscriber is None or event.get("subscriber") == subscriber:
            events.append(event)
    return events


def write_export(records: Iterable[ConsentRecord], out: IO[str]) -> int:
    """Write the opt-outs in force as CSV; the number of rows written."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    rows = 0
    for record in sorted(records, key=lambda r: r.subscriber):
        for scope in sorted(record.opt_outs):
            o = record.opt_outs[scope]
            writer.writerow(
                (record.subscriber, scope, o.opted_out_at, o.keyword, o.number)
            )
            rows += 1
    return rows


def export_command(settings: Settings, output: Path | None, console: Console) -> None:
    """Write the opt-outs in force as CSV, to a file or standard output."""
    records = rebuild(read_events(settings)).values()
    if output is None:
        write_export(records, sys.stdout)
        return
    with output.open("w", newline="") as out:
        rows = write_export(records, out)
    console.print(f"{rows} opt-outs written to {output}")
