"""Fixtures shared by the whole suite: one broker, few worker starts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.settings import Settings
from app.tools.admin import apply_topics
from app.topics import load_catalog
from tests.support.broker import BrokerUnderTest, test_broker
from tests.support.kafka import KafkaClient
from tests.support.worker import WorkerProcess


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerUnderTest]:
    with test_broker() as running:
        yield running


@pytest.fixture(scope="session")
def bootstrap_servers(broker: BrokerUnderTest) -> str:
    return broker.bootstrap_servers


@dataclass
class Stack:
    """An isolated set of topics and one consumer group on the shared broker."""

    name: str
    settings: Settings
    env: dict[str, str]
    root: Path

    def worker(self, label: str = "w1", **env: str) -> WorkerProcess:
        return WorkerProcess(
            env={**self.env, **env},
            data_dir=self.root / label / "data",
            log_path=self.root / f"{label}.log",
        )

    def client(self) -> KafkaClient:
        return KafkaClient(self.settings)


@pytest.fixture(scope="session")
def make_stack(
    broker: BrokerUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Stack]:
    def make(name: str, **overrides: str) -> Stack:
        suffix = uuid.uuid4().hex[:6]
        env = {
            "STOPGUARD_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "STOPGUARD_BROKER_FLAVOUR": broker.flavour,
            "STOPGUARD_TOPIC_PREFIX": f"{name}-{suffix}.",
            "STOPGUARD_APP_ID": f"stopguard-{name}-{suffix}",
            "STOPGUARD_LOG_LEVEL": "INFO",
            **overrides,
        }
        settings = Settings(
            **{k.removeprefix("STOPGUARD_").lower(): v for k, v in env.items()}
        )
        apply_topics(settings, load_catalog(settings))
        root = tmp_path_factory.mktemp(name)
        return Stack(name, settings, env, root)

    return make


@pytest.fixture(scope="session")
def shared_stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack("shared")


@pytest.fixture(scope="session")
def shared_worker(shared_stack: Stack) -> Iterator[WorkerProcess]:
    """One worker that every scenario test without a lifecycle of its own uses."""
    worker = shared_stack.worker().start()
    try:
        yield worker.wait_ready()
    finally:
        worker.terminate()


@pytest.fixture()
def kafka(shared_stack: Stack, shared_worker: WorkerProcess) -> Iterator[KafkaClient]:
    client = shared_stack.client()
    yield client
    client.close()
