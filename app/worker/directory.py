"""Keeps every worker's copy of the number registry (`sms.numbers`) current.

Every worker judges sends from any sender, so each one reads the whole
compacted registry topic (all partitions, no consumer group) rather than a
share of it. Sends wait until the registry has been read to its end once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from mode import Service
from pydantic import ValidationError

from app.models import NumberRegistration
from app.rules.numbers import sender_number
from app.rules.senders import SenderDirectory
from app.settings import Settings
from app.worker.kafka_options import aiokafka_options
from app.worker.metrics import REGISTERED_NUMBERS

log = logging.getLogger(__name__)

InvalidHandler = Callable[[ConsumerRecord, str], Awaitable[None]]


class DirectoryReader(Service):
    """Streams `sms.numbers` into a SenderDirectory."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        on_invalid: InvalidHandler,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.topic = topic
        self.on_invalid = on_invalid
        self.directory = SenderDirectory()
        self.loaded = asyncio.Event()

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            enable_auto_commit=False, group_id=None, **aiokafka_options(self.settings)
        )
        await self._consumer.start()
        partitions = await self._partitions()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._log_end = await self._consumer.end_offsets(partitions)

    async def on_stop(self) -> None:
        await self._consumer.stop()

    async def _partitions(self) -> list[TopicPartition]:
        ids = await self._wait_for_topic()
        return [TopicPartition(self.topic, p) for p in sorted(ids)]

    async def _wait_for_topic(self) -> set[int]:
        for attempt in range(1, 31):
            ids = self._consumer.partitions_for_topic(self.topic)
            if ids:
                return ids
            await self._consumer.topics()  # refreshes the cluster metadata
            log.warning("topic=%s not found yet, attempt %d/30", self.topic, attempt)
            await asyncio.sleep(1)
        raise RuntimeError(
            f"topic {self.topic} does not exist: run `stopguard topics apply`"
        )

    @Service.task
    async def _read(self) -> None:
        while not self.should_stop:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    await self._apply(record)
            await self._note_progress()

    async def _note_progress(self) -> None:
        REGISTERED_NUMBERS.set(len(self.directory))
        if self.loaded.is_set():
            return
        for tp, end in self._log_end.items():
            if await self._consumer.position(tp) < end:
                return
        log.info("registry loaded topic=%s numbers=%d", self.topic, len(self.directory))
        self.loaded.set()

    async def _apply(self, record: ConsumerRecord) -> None:
        key = record.key.decode("utf-8", "replace") if record.key else None
        if record.value is None:
            if key:
                self.directory.register(key, None)
            return
        try:
            registration = NumberRegistration.model_validate_json(record.value)
        except ValidationError as exc:
            await self.on_invalid(record, f"not a NumberRegistration: {exc}")
            return
        number = sender_number(registration.number)
        if number is None:
            await self.on_invalid(
                record,
                f"registration number {registration.number!r} is neither an "
                "E.164 number nor a short code; fix it and produce it again",
            )
            return
        self.directory.register(number, registration)
