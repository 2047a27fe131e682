"""The worker's HTTP API: health, readiness, metrics and consent state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from app.worker.app import Stopguard


def register_views(stopguard: Stopguard) -> None:
    app = stopguard.app

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()
        registry = stopguard.directory.loaded.is_set()
        body = {
            "ready": recovered and registry and not app.rebalancing,
            "tables_recovered": recovered,
            "registry_loaded": registry,
        }
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST)
