"""Event-time alignment of a partition's inbound messages and sends.

Faust hands a worker records from several topic partitions in whatever order
the fetches return them. SPEC property 2 needs more: a send stamped at time t
may only be judged once every inbound record of its partition stamped before
t has been applied. Like a Kafka Streams task with `max.task.idle.ms`, each
partition merges its inputs by timestamp: the earliest record goes first,
and a send waits while an inbound source has nothing buffered, unless that
source has already delivered a record stamped at or after the send, is
caught up with its log end, or has been idle (delivered nothing) for longer
than the idle bound. A source that keeps delivering older records, such as
a backlog being read at start-up, keeps the send waiting however long that
takes. An inbound record never waits for anything but an earlier send.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

Item = TypeVar("Item")
Kind = Literal["inbound", "send"]
CaughtUp = Callable[[str, int], bool]


@dataclass
class _Entry(Generic[Item]):
    source: str
    timestamp: float
    since: float
    item: Item


@dataclass
class _PartitionQueues(Generic[Item]):
    inbound: deque[_Entry[Item]] = field(default_factory=deque)
    sends: deque[_Entry[Item]] = field(default_factory=deque)


@dataclass
class EventTimeAligner(Generic[Item]):
    """Merges each partition's inbound messages and sends in event-time order."""

    inbound_topics: tuple[str, ...]
    max_idle: float
    _queues: dict[int, _PartitionQueues[Item]] = field(default_factory=dict)
    _watermarks: dict[tuple[str, int], float] = field(default_factory=dict)
    _last_delivery: dict[tuple[str, int], float] = field(default_factory=dict)
    _held: int = 0

    def __len__(self) -> int:
        return self._held

    def push(
        self,
        kind: Kind,
        source: str,
        partition: int,
        timestamp: float,
        now: float,
        item: Item,
    ) -> None:
        """Buffer a record delivered from `source` (a topic) and `partition`."""
        queues = self._queues.setdefault(partition, _PartitionQueues())
        if kind == "inbound":
            self._last_delivery[(source, partition)] = now
        queue = queues.inbound if kind == "inbound" else queues.sends
        queue.append(_Entry(source, timestamp, now, item))
        self._held += 1

    def release(self, now: float, caught_up: CaughtUp) -> Iterator[Item]:
        """Records that may be handled now, in the order to handle them."""
        for partition, queues in self._queues.items():
            yield from self._release_partition(partition, queues, now, caught_up)

    def forget(self, partitions: Iterable[int]) -> list[Item]:
        """Drop the buffers of revoked partitions; their records come again."""
        dropped: list[Item] = []
        for partition in partitions:
            queues = self._queues.pop(partition, None)
            if queues is not None:
                dropped += [e.item for e in (*queues.inbound, *queues.sends)]
                self._held -= len(queues.inbound) + len(queues.sends)
            for topic in self.inbound_topics:
                self._watermarks.pop((topic, partition), None)
                self._last_delivery.pop((topic, partition), None)
        return dropped

    def _release_partition(
        self,
        partition: int,
        queues: _PartitionQueues[Item],
        now: float,
        caught_up: CaughtUp,
    ) -> Iterator[Item]:
        inbound, sends = queues.inbound, queues.sends
        while inbound or sends:
            if inbound and (not sends or inbound[0].timestamp <= sends[0].timestamp):
                entry = inbound.popleft()
                self._held -= 1
                self._advance(entry.source, partition, entry.timestamp)
                yield entry.item
            elif inbound or self._send_may_go(partition, sends[0], now, caught_up):
                self._held -= 1
                yield sends.popleft().item
            else:
                return

    def _advance(self, source: str, partition: int, timestamp: float) -> None:
        key = (source, partition)
        self._watermarks[key] = max(self._watermarks.get(key, timestamp), timestamp)

    def _send_may_go(
        self, partition: int, send: _Entry[Item], now: float, caught_up: CaughtUp
    ) -> bool:
        for topic in self.inbound_topics:
            source = (topic, partition)
            if self._watermarks.get(source, float("-inf")) >= send.timestamp:
                continue
            if caught_up(topic, partition):
                continue
            idle_since = max(send.since, self._last_delivery.get(source, send.since))
            if now - idle_since < self.max_idle:
                return False
        return True
