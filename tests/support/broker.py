"""Which broker the tests use: configured, testcontainers, or embedded."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from app.tools.broker import EmbeddedBroker, free_port

log = logging.getLogger(__name__)


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # no engine, no socket, no client: all mean "no"
        return False


@contextmanager
def test_broker() -> Iterator[str]:
    """Bootstrap servers of the broker this test session runs against."""
    configured = os.environ.get("STOPGUARD_BOOTSTRAP_SERVERS")
    if configured:
        log.info("tests use the configured broker %s", configured)
        yield configured
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    with EmbeddedBroker(free_port()) as broker:
        yield broker.bootstrap_servers
