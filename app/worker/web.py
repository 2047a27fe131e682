"""The worker's HTTP API: health, readiness, metrics and consent state."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.models import format_time
from app.rules.consent import SubscriberConsent
from app.rules.numbers import sender_number, subscriber_number

if TYPE_CHECKING:
    from app.worker.app import Stopguard


def register_views(stopguard: Stopguard) -> None:
    app = stopguard.app

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore
        registry = stopguard.directory.loaded.is_set()
        body = {
            "ready": recovered and registry and not app.rebalancing,
            "tables_recovered": recovered,
            "registry_loaded": registry,
        }
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type, so the header is set whole.
        headers = {"Content-Type": CONTENT_TYPE_LATEST}
        return web.bytes(generate_latest(), headers=headers)

    register_number_view(stopguard)
    register_subscriber_view(stopguard)


def register_number_view(stopguard: Stopguard) -> None:
    app = stopguard.app

    @app.page("/numbers/{number}")
    async def number(web: View, request: Request, number: str) -> Response:
        """How sends from one of our numbers are judged (registry or metadata)."""
        canonical = sender_number(number)
        if canonical is None:
            return web.json(
                {"error": f"{number!r} is neither an E.164 number nor a short code"},
                status=400,
            )
        profile = stopguard.directory.directory.profile(canonical)
        body = asdict(profile) | {"enforces_opt_outs": profile.enforces_opt_outs}
        return web.json(body)


def register_subscriber_view(stopguard: Stopguard) -> None:
    app = stopguard.app
    table = stopguard.consent

    @app.page("/subscribers/{subscriber}")
    async def subscriber(web: View, request: Request, subscriber: str) -> Response:
        """A subscriber's consent in every scope, answered by the key's owner."""
        canonical = subscriber_number(subscriber)
        if canonical is None:
            return web.json(
                {"error": f"{subscriber!r} is not an E.164 subscriber number"},
                status=400,
            )
        # Faust's table_route hashes the path as written; routing on the
        # E.164 form sends "+1 415…" and "+1415…" to the same owner, the one
        # partition_for (murmur2 of the E.164 key) picked for the table row.
        try:
            return await app.router.route_req(
                table.name,
                canonical,
                web,  # type: ignore[arg-type]
                request,
            )
        except SameNode:
            body, status = consent_body(table.get(canonical), canonical)
            return web.json(body, status=status)


def consent_body(raw: bytes | None, subscriber: str) -> tuple[dict[str, Any], int]:
    """The JSON body and status of GET /subscribers/{subscriber}."""
    if raw is None:
        error = f"no consent record for {subscriber}: it never sent a keyword"
        return {"error": error, "subscriber": subscriber}, 404
    consent = SubscriberConsent.from_json(raw)
    opt_outs = {
        scope: {
            "opted_out_at": format_time(opt_out.opted_out_at),
            "keyword": opt_out.keyword,
            "number": opt_out.number,
            "ack_used": opt_out.ack_used,
        }
        for scope, opt_out in consent.opt_outs.items()
    }
    history = [event.model_dump(mode="json") for event in consent.history]
    body = {"subscriber": subscriber, "opt_outs": opt_outs, "history": history}
    return body, 200
