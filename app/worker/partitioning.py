"""Which partition holds a subscriber: Kafka's default (murmur2) partitioner."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(subscriber: str | bytes, partitions: int) -> int:
    """The partition Java clients, aiokafka and Faust choose for this key.

    librdkafka-based producers (confluent-kafka) pick the same partition only
    with `partitioner=murmur2_random`; records elsewhere are forwarded.
    """
    key = subscriber.encode() if isinstance(subscriber, str) else subscriber
    return (murmur2(key) & 0x7FFFFFFF) % partitions
