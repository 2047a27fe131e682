"""`stopguard run`: a worker, on the embedded broker when none is configured."""

from __future__ import annotations

import logging
from contextlib import ExitStack

import faust

from app.errors import ConfigurationError
from app.logs import drop_spinner, logging_config
from app.settings import Settings
from app.tools.admin import apply_topics, missing_topics
from app.tools.broker import EmbeddedBroker
from app.topics import load_catalog

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> None:
    """Start a worker and block until it is stopped (Ctrl-C or SIGTERM)."""
    with ExitStack() as stack:
        if not settings.bootstrap_servers:
            broker = stack.enter_context(EmbeddedBroker(settings.embedded_broker_port))
            settings = settings.model_copy(
                update={
                    "bootstrap_servers": broker.bootstrap_servers,
                    "broker_flavour": "tansu",
                }
            )
            apply_topics(settings, load_catalog(settings))
        else:
            _require_topics(settings)
        _start_faust_worker(settings)


def _require_topics(settings: Settings) -> None:
    missing = missing_topics(settings, load_catalog(settings))
    if missing:
        raise ConfigurationError(
            f"topics {', '.join(missing)} do not exist on "
            f"{settings.bootstrap_servers}; run `stopguard topics apply` first"
        )


def _start_faust_worker(settings: Settings) -> None:
    from app.worker.app import Stopguard
    from app.worker.event_loop import install_event_loop
    from app.worker.web import register_views

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    install_event_loop(settings)
    stopguard = Stopguard(settings)
    register_views(stopguard)
    worker = faust.Worker(
        stopguard.app,
        loglevel=settings.log_level,
        logging_config=logging_config(settings),
        quiet=True,
    )
    drop_spinner(worker)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
