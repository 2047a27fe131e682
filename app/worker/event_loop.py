"""The worker's event loop: uvloop unless told otherwise.

Most of Faust's cost per record is event-loop work: futures, callbacks and
socket writes for every record produced. uvloop does that work in C
(BENCHMARKS.md measures the difference); `STOPGUARD_EVENT_LOOP=asyncio`
keeps the standard loop.
"""

from __future__ import annotations

import asyncio

from app.settings import Settings


def install_event_loop(settings: Settings) -> None:
    """Set the loop policy before Faust creates its loops (it makes two)."""
    if settings.event_loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
