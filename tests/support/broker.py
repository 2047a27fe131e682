"""Which broker the tests use: configured, testcontainers, or embedded."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from app.tools.broker import EmbeddedBroker, free_port

log = logging.getLogger(__name__)


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # no engine, no socket, no client: all mean "no"
        return False


@dataclass(frozen=True)
class BrokerUnderTest:
    bootstrap_servers: str
    flavour: str  # "kafka" or "tansu", as STOPGUARD_BROKER_FLAVOUR

    def new_topic(self, prefix: str, partitions: int) -> str:
        """Create a topic of its own for one test; its name."""
        topic = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
        return topic


@contextmanager
def test_broker() -> Iterator[BrokerUnderTest]:
    """The broker this test session runs against."""
    configured = os.environ.get("STOPGUARD_BOOTSTRAP_SERVERS")
    if configured:
        log.info("tests use the configured broker %s", configured)
        flavour = os.environ.get("STOPGUARD_BROKER_FLAVOUR", "kafka")
        yield BrokerUnderTest(configured, flavour)
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield BrokerUnderTest(kafka.get_bootstrap_server(), "kafka")
        return
    with EmbeddedBroker(free_port()) as broker:
        yield BrokerUnderTest(broker.bootstrap_servers, "tansu")
