"""Creating and updating stopguard's topics from topics/topics.yaml."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from app.errors import BrokerError, ConfigurationError
from app.settings import Settings
from app.topics import TopicCatalog, TopicSpec

log = logging.getLogger(__name__)

Outcome = Literal["created", "updated", "unchanged", "config not applied"]


@dataclass(frozen=True)
class TopicChange:
    topic: str
    outcome: Outcome
    detail: str = ""


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.confluent_config())


def apply_topics(
    settings: Settings, catalog: TopicCatalog, timeout: float = 30.0
) -> list[TopicChange]:
    """Create missing topics and set the configs of existing ones."""
    admin = admin_client(settings)
    existing = _existing_partitions(admin, timeout)
    changes: list[TopicChange] = []
    missing = [spec for spec in catalog if spec.name not in existing]
    changes += _create(admin, missing, timeout)
    for spec in catalog:
        if spec.name in existing:
            _check_partitions(spec, existing[spec.name])
            changes.append(_update_config(admin, spec, timeout))
    return changes


def missing_topics(settings: Settings, catalog: TopicCatalog) -> list[str]:
    existing = _existing_partitions(admin_client(settings), 30.0)
    return [spec.name for spec in catalog if spec.name not in existing]


def _existing_partitions(admin: AdminClient, timeout: float) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(
            f"cannot list topics: {exc}; check STOPGUARD_BOOTSTRAP_SERVERS and the "
            "security settings"
        ) from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def _create(
    admin: AdminClient, specs: list[TopicSpec], timeout: float
) -> list[TopicChange]:
    if not specs:
        return []
    new_topics = [
        NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
        for s in specs
    ]
    futures = admin.create_topics(new_topics, request_timeout=timeout)
    changes = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise BrokerError(f"cannot create topic {name}: {exc}") from exc
        log.info("topic created topic=%s", name)
        changes.append(TopicChange(name, "created"))
    return changes


def _check_partitions(spec: TopicSpec, actual: int) -> None:
    # Adding partitions moves keys to new partitions and splits a
    # subscriber's history, so stopguard never does it behind a user's back.
    if actual != spec.partitions:
        raise ConfigurationError(
            f"topic {spec.name} has {actual} partitions but topics/topics.yaml "
            f"asks for {spec.partitions}; stopguard's inputs must be "
            "co-partitioned, so align STOPGUARD_PARTITIONS with the cluster "
            "or migrate the topic"
        )


def _update_config(admin: AdminClient, spec: TopicSpec, timeout: float) -> TopicChange:
    if not spec.config:
        return TopicChange(spec.name, "unchanged")
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        spec.name,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in spec.config.items()
        ],
    )
    try:
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(timeout)
    except KafkaException as exc:
        log.warning("topic config not applied topic=%s: %s", spec.name, exc)
        return TopicChange(spec.name, "config not applied", str(exc))
    return TopicChange(spec.name, "updated", ", ".join(spec.config))
