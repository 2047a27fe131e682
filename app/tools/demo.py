"""`stopguard demo`: a short scenario played against a running worker."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.table import Table

from app.models import format_time
from app.settings import Settings
from app.tools.clients import produce_json, producer, read_topics, tool_settings
from app.topics import load_catalog


@dataclass(frozen=True)
class Step:
    note: str
    topic: str  # a key of the topic catalog
    key: str | None
    value: dict[str, Any] | bytes
    request_id: str | None = None


def scenario(tag: str, start: datetime) -> list[Step]:
    """STOP, the acknowledgement, campaign scope, START and a dead letter."""
    subscriber = f"+1415555{random.randint(1000, 9999)}"
    number_a, number_b = "+12015550101", "+12015550102"  # campaign "spring"
    number_c = "+12015550103"  # no campaign

    def send(step: int, sender: str, text: str, note: str) -> Step:
        request_id = f"demo-{tag}-{step}"
        value = {
            "request_id": request_id,
            "from": sender,
            "to": subscriber,
            "text": text,
            "requested_at": at(step),
        }
        return Step(note, "requests", subscriber, value, request_id)

    def inbound(step: int, number: str, text: str, note: str) -> Step:
        value = {
            "message_id": f"demo-{tag}-in-{step}",
            "from": subscriber,
            "to": number,
            "text": text,
            "received_at": at(step),
        }
        return Step(note, "inbound", subscriber, value)

    def at(step: int) -> str:
        return format_time(start + timedelta(seconds=10 * step)) or ""

    def register(number: str, campaign: str | None) -> Step:
        value = {
            "number": number,
            "type": "long_code",
            "country": "US",
            "campaign_id": campaign,
            "dnd": None,
        }
        return Step(f"register {number}", "numbers", number, value)

    return [
        register(number_a, "spring"),
        register(number_b, "spring"),
        register(number_c, None),
        send(1, number_a, "Spring sale starts today!", "before any STOP"),
        inbound(2, number_a, " Stop. ", "subscriber texts STOP to A"),
        send(3, number_a, "You are unsubscribed.", "the one acknowledgement"),
        send(4, number_a, "Last chance!", "a second send after STOP"),
        send(5, number_b, "Hello from B", "other number, same campaign"),
        send(6, number_c, "Your order shipped", "number outside the campaign"),
        inbound(7, number_b, "start", "subscriber texts START to B"),
        send(8, number_a, "Welcome back!", "after START"),
        send(9, "+1999", "Broken sender", "sender is not a number"),
        Step(
            "unreadable JSON",
            "requests",
            subscriber,
            f'{{"request_id": "demo-{tag}-broken", "from": '.encode(),
        ),
    ]


def run_demo(settings: Settings, console: Console, timeout: float) -> None:
    settings = tool_settings(settings)
    catalog = load_catalog(settings)
    tag = datetime.now(UTC).strftime("%H%M%S") + f"{random.randint(0, 999):03d}"
    steps = scenario(tag, datetime.now(UTC) - timedelta(minutes=2))

    client = producer(settings)
    for step in steps:
        produce_json(client, getattr(catalog, step.topic), step.key, step.value)
        # Inbound and sends travel on different topics: a short pause keeps
        # the demo's story in the order it is told.
        client.flush(10)
        time.sleep(0.2)
    console.print(f"produced {len(steps)} records; waiting for decisions ...")

    decisions = _await_decisions(settings, steps, tag, timeout)
    console.print(_table(steps, decisions))


def _await_decisions(
    settings: Settings, steps: list[Step], tag: str, timeout: float
) -> dict[str, dict[str, Any]]:
    catalog = load_catalog(settings)
    wanted = {s.request_id for s in steps if s.request_id}
    topics = [catalog.approved, catalog.rejected, catalog.deadletter]
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in read_topics(settings, topics):
            record = json.loads(message.value() or b"{}")
            if message.topic() == catalog.deadletter:
                if f"demo-{tag}" in record.get("raw", ""):
                    found["dead letter"] = record
            elif record.get("request_id") in wanted:
                found[record["request_id"]] = record
        if wanted <= found.keys() and "dead letter" in found:
            break
        time.sleep(1)
    return found


def _table(steps: list[Step], decisions: dict[str, dict[str, Any]]) -> Table:
    table = Table("step", "record", "outcome", "code", "scope", "ack")
    for step in steps:
        if step.topic == "numbers":
            continue
        if step.request_id:
            decision = decisions.get(step.request_id)
            table.add_row(step.note, "send", *_outcome(decision))
        elif step.topic == "inbound":
            assert isinstance(step.value, dict)
            table.add_row(
                step.note,
                f"inbound {step.value['text'].strip()!r}",
                "consent change",
                "",
                "",
                "",
            )
        else:
            letter = decisions.get("dead letter")
            outcome = "dead letter" if letter else "no dead letter seen"
            table.add_row(step.note, "bad bytes", outcome, "", "", "")
    return table


def _outcome(decision: dict[str, Any] | None) -> tuple[str, str, str, str]:
    if decision is None:
        return ("no decision yet", "", "", "")
    code = decision["error_code"]
    return (
        decision["status"],
        "" if code is None else str(code),
        decision["scope"],
        "yes" if decision["ack"] else "",
    )
