"""The worker's producer settles each record's future with where it landed."""

from __future__ import annotations

import asyncio

from confluent_kafka import Consumer, TopicPartition

from app.settings import Settings
from app.worker.delivery import Delivered, DeliveryError, DeliveryProducer
from tests.support.broker import BrokerUnderTest


def test_each_record_is_reported_where_it_was_written_in_order(
    broker: BrokerUnderTest,
) -> None:
    topic = broker.new_topic("delivery", partitions=2)
    settings = Settings(bootstrap_servers=broker.bootstrap_servers)

    async def produce() -> list[Delivered]:
        producer = DeliveryProducer(settings)
        await producer.start()
        try:
            written = [
                producer.produce(topic, b"k", f"v{n}".encode(), partition=1)
                for n in range(50)
            ]
            return await asyncio.wait_for(asyncio.gather(*written), 60)
        finally:
            await producer.stop()

    delivered = asyncio.run(produce())

    assert [d.offset for d in delivered] == list(range(50))
    assert {(d.topic, d.partition) for d in delivered} == {(topic, 1)}
    reader = Consumer(
        {"bootstrap.servers": broker.bootstrap_servers, "group.id": topic}
    )
    reader.assign([TopicPartition(topic, 1, 0)])
    values = []
    while len(values) < 50:
        message = reader.poll(10)
        assert message is not None, f"only {len(values)} of 50 records read back"
        values.append(message.value())
    reader.close()
    assert values == [f"v{n}".encode() for n in range(50)]


def test_a_refused_record_fails_its_future(broker: BrokerUnderTest) -> None:
    topic = broker.new_topic("delivery", partitions=1)
    settings = Settings(bootstrap_servers=broker.bootstrap_servers)

    async def produce_to_a_missing_partition() -> BaseException | None:
        producer = DeliveryProducer(settings)
        await producer.start()
        try:
            written = producer.produce(topic, b"k", b"v", partition=5)
            try:
                await asyncio.wait_for(written, 60)
            except DeliveryError as exc:
                return exc
            return None
        finally:
            await producer.stop()

    refused = asyncio.run(produce_to_a_missing_partition())
    assert isinstance(refused, DeliveryError)
    assert topic in str(refused)
