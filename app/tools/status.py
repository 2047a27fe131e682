"""`stopguard status`: one subscriber's consent, from a worker or the topics."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from rich.console import Console
from rich.table import Table

from app.errors import BrokerError, StopguardError
from app.rules.numbers import subscriber_number
from app.settings import Settings
from app.tools.consent_log import read_events, rebuild


class UnknownSubscriber(StopguardError):
    """Nothing is recorded about the subscriber."""


def canonical_subscriber(raw: str) -> str:
    subscriber = subscriber_number(raw)
    if subscriber is None:
        raise StopguardError(f"{raw!r} is not an E.164 subscriber number")
    return subscriber


def status_from_api(url: str, subscriber: str, timeout: float = 10) -> dict[str, Any]:
    """GET /subscribers/{subscriber} from a worker; any worker routes it."""
    path = "/subscribers/" + urllib.parse.quote(subscriber, safe="+")
    try:
        with urllib.request.urlopen(url.rstrip("/") + path, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        body = _json_or_text(exc.read())
        if exc.code == 404:
            raise UnknownSubscriber(f"no consent recorded for {subscriber}") from None
        answer = f"the worker at {url} answered {exc.code}: {body}"
        raise StopguardError(answer) from None
    except (urllib.error.URLError, OSError) as exc:
        raise BrokerError(
            f"cannot reach the worker at {url}: {exc}; start one with "
            "`stopguard run`, pass --url, or use --from-topics"
        ) from exc


def status_from_topics(settings: Settings, subscriber: str) -> dict[str, Any]:
    """The same body, rebuilt from the consent-events topic alone."""
    records = rebuild(read_events(settings, subscriber))
    if subscriber not in records:
        raise UnknownSubscriber(f"no consent event recorded for {subscriber}")
    return records[subscriber].to_body()


def render_status(console: Console, body: dict[str, Any]) -> None:
    opt_outs = body.get("opt_outs") or {}
    console.print(f"[bold]{body['subscriber']}[/]")
    if opt_outs:
        table = Table("scope", "opted out at", "keyword", "number", "ack used")
        for scope, o in sorted(opt_outs.items()):
            ack = "?" if o.get("ack_used") is None else str(o["ack_used"]).lower()
            table.add_row(scope, o["opted_out_at"], o["keyword"], o["number"], ack)
        console.print(table)
    else:
        console.print("opted out of no scope: sends are approved")
    history = Table("seq", "at", "action", "keyword", "scope", "number", "policy")
    for event in body.get("history") or []:
        history.add_row(
            str(event.get("sequence") or ""),
            event["at"],
            event["action"],
            event["keyword"],
            event["scope"],
            event["number"],
            event.get("policy") or "",
        )
    console.print(history)


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def status_command(
    settings: Settings,
    raw_subscriber: str,
    *,
    url: str | None,
    from_topics: bool,
    as_json: bool,
    console: Console,
) -> None:
    subscriber = canonical_subscriber(raw_subscriber)
    if from_topics:
        body = status_from_topics(settings, subscriber)
    else:
        worker = url or f"http://127.0.0.1:{settings.web_port}"
        body = status_from_api(worker, subscriber)
    if as_json:
        console.print_json(data=body)
    else:
        render_status(console, body)
