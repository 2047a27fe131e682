"""Faust's Kafka transport, corrected for the embedded broker's end offsets.

Tansu answers a ListOffsets request for the latest offset with one past the
*first* record of a partition's last record batch, not one past its last
record; the high watermark in its fetch responses is exact. Faust recovers
a table by reading its changelog up to the ListOffsets answer, so on Tansu
it would stop inside the last batch and forget the records after that
batch's first one: an opt-out among them would be lost.

The transport below asks the broker for the end offsets as usual and then
corrects each non-empty partition's by fetching from one before it and
reading the fetch response's high watermark. On Apache Kafka both answers
agree, so the correction is only installed with `broker_flavour=tansu`.

Tansu also holds a fetch for its whole wait even when records arrive in the
meantime (Apache Kafka answers as soon as there is data). Faust waits up to
1.5 s per fetch, which on Tansu puts up to 1.5 s between a request and its
decision; the worker's consumer waits 50 ms instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import cast

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 30.0
FETCH_MAX_WAIT_MS = 50


async def exact_end_offsets(
    consumer: AIOKafkaConsumer,
    listed: Mapping[TP, int | None],
    timeout: float = PROBE_TIMEOUT,
) -> dict[TP, int | None]:
    """End offsets as the fetch responses report them.

    `consumer` is a started consumer outside any group; it is assigned the
    probed partitions. A partition that reports no offset or an empty log is
    exact already and is not fetched.
    """
    ends = dict(listed)
    pending = {
        TopicPartition(tp.topic, tp.partition): end
        for tp, end in listed.items()
        if end  # None or 0: nothing to correct
    }
    if not pending:
        return ends
    consumer.assign(list(pending))
    for tp, end in pending.items():
        consumer.seek(tp, end - 1)
    deadline = asyncio.get_running_loop().time() + timeout
    while pending:
        if asyncio.get_running_loop().time() >= deadline:
            log.warning(
                "no fetch answer in %.0fs for %s: keeping the listed end offsets",
                timeout,
                sorted(f"{tp.topic}:{tp.partition}" for tp in pending),
            )
            break
        await consumer.getmany(*pending, timeout_ms=200, max_records=1)
        for tp in list(pending):
            highwater = consumer.highwater(tp)
            if highwater is not None:
                key = TP(tp.topic, tp.partition)
                ends[key] = max(highwater, ends[key] or 0)
                del pending[tp]
    return ends


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with a short fetch wait."""

    def _create_worker_consumer(
        self, transport: faust_aiokafka.Transport
    ) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes a fixed 1,500 ms; aiokafka reads it when it starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """Faust's consumer with end offsets read from fetch responses.

    The correction runs on the app's event loop with a short-lived consumer
    of its own, outside the group: the group consumer's positions are not
    touched.
    """

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        listed: Mapping[TP, int | None] = await super().highwaters(*partitions)
        if not any(listed.values()):
            return listed  # type: ignore[return-value]
        transport = cast(faust_aiokafka.Transport, self.transport)
        conf = self.app.conf
        probe = AIOKafkaConsumer(
            bootstrap_servers=faust_aiokafka.server_list(
                transport.url, transport.default_port
            ),
            enable_auto_commit=False,
            group_id=None,
            **faust_aiokafka.credentials_to_aiokafka_auth(
                conf.broker_credentials, conf.ssl_context
            ),
        )
        await probe.start()
        try:
            ends = await exact_end_offsets(probe, listed)
        finally:
            await probe.stop()
        corrected = {tp: end for tp, end in ends.items() if end != listed.get(tp)}
        if corrected:
            self.log.info("end offsets read from fetch responses: %s", corrected)
        return ends  # type: ignore[return-value]

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with Tansu's end offsets corrected."""

    Consumer = Consumer
