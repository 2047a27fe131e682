"""confluent-kafka clients for the command-line tools."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from app.settings import Settings


def tool_settings(settings: Settings) -> Settings:
    """Tools talk to the configured cluster, else to `stopguard run`'s broker."""
    if settings.bootstrap_servers:
        return settings
    embedded = f"127.0.0.1:{settings.embedded_broker_port}"
    return settings.model_copy(update={"bootstrap_servers": embedded})


def producer(settings: Settings, **extra: Any) -> Producer:
    # murmur2 puts a key where Java clients and stopguard's workers expect it.
    config = {
        **settings.confluent_config(),
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "linger.ms": 5,
        **extra,
    }
    return Producer(config)


def produce_json(
    client: Producer, topic: str, key: str | None, value: dict[str, Any] | bytes
) -> None:
    payload = value if isinstance(value, bytes) else json.dumps(value).encode()
    client.produce(topic, key=key.encode() if key else None, value=payload)
    client.poll(0)


def reader(settings: Settings, **extra: Any) -> Consumer:
    """A consumer outside any group, for reading topics from the beginning."""
    config = {
        **settings.confluent_config(),
        "group.id": f"stopguard-tool-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **extra,
    }
    return Consumer(config)


def read_topics(
    settings: Settings, topics: list[str], idle_timeout: float = 2.0
) -> Iterator[Message]:
    """Every record of `topics` from the beginning up to their current end."""
    # A partition ends at the broker's EOF, not at the high watermark read
    # beforehand: the embedded broker may report one inside the last batch.
    consumer = reader(settings, **{"enable.partition.eof": True})
    try:
        ends = _assign_from_start(consumer, topics)
        remaining = {tp for tp, end in ends.items() if end > 0}
        while remaining:
            message = consumer.poll(idle_timeout)
            if message is None:
                break
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard((message.topic(), message.partition()))
                    continue
                raise RuntimeError(f"reading {message.topic()}: {error}")
            yield message
    finally:
        consumer.close()


def _assign_from_start(consumer: Consumer, topics: list[str]) -> dict[Any, int]:
    metadata = consumer.list_topics(timeout=30)
    ends: dict[tuple[str, int], int] = {}
    assignment = []
    for topic in topics:
        if topic not in metadata.topics:
            continue
        for partition in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=30
            )
            ends[(topic, partition)] = high
            assignment.append(TopicPartition(topic, partition, low))
    consumer.assign(assignment)
    return ends
