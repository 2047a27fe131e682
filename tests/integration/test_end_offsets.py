"""Table recovery reads changelogs to their true end on every broker."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from confluent_kafka import Producer
from faust.types import TP

from app.worker.tansu import exact_end_offsets
from tests.support.broker import BrokerUnderTest


def test_end_offsets_count_every_record_of_the_last_batch(
    broker: BrokerUnderTest,
) -> None:
    topic = broker.new_topic("end-offsets", partitions=3)
    # Partition 0 ends in a batch of five records, partition 1 in a batch of
    # one, partition 2 stays empty.
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 100}
    )
    for batch in (3, 5):
        for i in range(batch):
            producer.produce(topic, f"r{i}".encode(), partition=0)
        producer.flush(30)
    producer.produce(topic, b"alone", partition=1)
    producer.flush(30)

    async def ends() -> dict[TP, int | None]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(3)]
            listed = await consumer.end_offsets(partitions)
            return await exact_end_offsets(
                consumer,
                {TP(tp.topic, tp.partition): end for tp, end in listed.items()},
            )
        finally:
            await consumer.stop()

    assert asyncio.run(ends()) == {TP(topic, 0): 8, TP(topic, 1): 1, TP(topic, 2): 0}
