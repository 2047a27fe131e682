"""SPEC section 4, properties 1 to 4, through a broker and real workers.

The tests here share one stack whose workers they start, kill and restart in
order: the backlog worker, a crash with lost local state, a second worker in
the group, a graceful stop and a clean restart.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import Stack
from tests.support.kafka import KafkaClient, Scenario
from tests.support.numbers import fresh_subscriber, fresh_us_sender
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration


@dataclass
class Lifecycle:
    stack: Stack
    kafka: KafkaClient
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    opted_out: list[str] = field(default_factory=list)
    sender: str = field(default_factory=fresh_us_sender)

    def start(self, label: str) -> WorkerProcess:
        worker = self.workers.get(label) or self.stack.worker(label)
        self.workers[label] = worker.start()
        return worker

    def restored(self, label: str) -> float:
        """Changelog records the worker read into its local state."""
        status, text = self.workers[label].get("/metrics")
        assert status == 200
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("stopguard_changelog_records_restored_total{")
        )


@pytest.fixture(scope="module")
def lifecycle(make_stack: Callable[..., Stack]) -> Iterator[Lifecycle]:
    stack = make_stack("lifecycle")
    kafka = stack.client()
    life = Lifecycle(stack, kafka)
    yield life
    for worker in life.workers.values():
        worker.terminate()
    kafka.close()


def assert_one_decision_content(
    kafka: KafkaClient, request_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """Each request has decisions, and all of them agree but for decided_at."""
    first: dict[str, dict[str, Any]] = {}
    for request_id in request_ids:
        records = kafka.all_decisions(request_id)
        assert records, f"{request_id} has no decision"
        contents = {_content(r) for r in records}
        assert len(contents) == 1, f"{request_id} has contradicting decisions"
        first[request_id] = records[0]
    return first


def _content(decision: dict[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in decision.items() if k != "decided_at"))


def test_a_stop_behind_a_backlog_still_blocks_later_sends(
    lifecycle: Lifecycle,
) -> None:
    """Property 2: the worker starts on a backlog with the STOP deep inside it."""
    kafka, scenario = lifecycle.kafka, Scenario.new()
    subscribers = [fresh_subscriber() for _ in range(20)]
    chatter = fresh_subscriber()
    # Thousands of older inbound records on every partition stand before
    # the STOPs, written before any worker runs.
    for i in range(6000):
        kafka.inbound(
            scenario.inbound(chatter, lifecycle.sender, f"hi {i}", -3600 + i / 10)
        )
        kafka.inbound(
            scenario.inbound(
                subscribers[i % 20], lifecycle.sender, "ok", -3000 + i / 10
            )
        )
    for subscriber in subscribers:
        kafka.inbound(scenario.inbound(subscriber, lifecycle.sender, "STOP", 0))
    lifecycle.opted_out += subscribers
    before = [scenario.send(lifecycle.sender, s, -60) for s in subscribers]
    after = [scenario.send(lifecycle.sender, s, 600) for s in subscribers]
    for send in before + after:
        kafka.send(send)
    kafka.flush()

    lifecycle.start("w1").wait_ready()
    decisions = kafka.await_decisions(before + after, timeout=180)

    assert {decisions[s["request_id"]]["error_code"] for s in after} == {200}
    # A send stamped before its STOP is approved when it reaches the worker
    # before the STOP is applied; inbound records never wait for sends (README,
    # Design), so one fetched after its partition's STOP is judged against it.
    for send in before:
        decision = decisions[send["request_id"]]
        assert decision["status"] == "approved" or (
            decision["error_code"] == 200
            and datetime.fromisoformat(decision["opted_out_at"])
            > datetime.fromisoformat(send["requested_at"])
        ), decision


def test_a_repeated_request_gets_its_first_decision(lifecycle: Lifecycle) -> None:
    """Property 3: a retry after the state changed repeats, never contradicts."""
    kafka, scenario = lifecycle.kafka, Scenario.new()
    subscriber = fresh_subscriber()
    send = scenario.send(lifecycle.sender, subscriber, 0)
    kafka.send(send)
    first = kafka.await_decisions([send])[send["request_id"]]
    stop = scenario.inbound(subscriber, lifecycle.sender, "STOP", 5)
    kafka.inbound(stop)
    kafka.applied(stop)

    kafka.send(send)
    kafka.send(send, key=None)  # a retry that even lost its key
    kafka.wait_for(lambda: len(kafka.all_decisions(send["request_id"])) == 3)

    assert kafka.all_decisions(send["request_id"]) == [first, first, first]
    assert first["status"] == "approved"
    lifecycle.opted_out.append(subscriber)


def test_sigkill_and_lost_local_state_change_no_decision(
    lifecycle: Lifecycle,
) -> None:
    """Property 4: kill -9 mid-stream, delete RocksDB, restart: same decisions."""
    kafka, scenario = lifecycle.kafka, Scenario.new()
    worker = lifecycle.workers["w1"]
    subscribers = [fresh_subscriber() for _ in range(200)]
    stops = [scenario.inbound(s, lifecycle.sender, "STOP", 0) for s in subscribers]
    for stop in stops:
        kafka.inbound(stop)
    for stop in stops:
        kafka.applied(stop)
    lifecycle.opted_out += subscribers
    sends = [
        scenario.send(lifecycle.sender, s, offset)
        for s in subscribers
        for offset in (30, 40, 50)
    ]
    for send in sends[: len(sends) // 2]:
        kafka.send(send)
    kafka.wait_for(lambda: len(kafka.decisions(s["request_id"] for s in sends)) > 50)

    worker.kill()
    shutil.rmtree(worker.data_dir)
    for send in sends[len(sends) // 2 :] + sends[:100]:
        kafka.send(send)  # the rest, and some retries of what came before
    worker.start().wait_ready()
    kafka.await_decisions(sends, timeout=180)
    retried = [send["request_id"] for send in sends[:100]]
    kafka.wait_for(
        lambda: all(len(kafka.all_decisions(r)) >= 2 for r in retried),
        timeout=120,
        what="the answers to the retries",
    )

    decisions = assert_one_decision_content(kafka, [s["request_id"] for s in sends])
    for subscriber in subscribers:
        mine = [d for d in decisions.values() if d["to"] == subscriber]
        assert sorted(d["ack"] for d in mine) == [False, False, True]
        assert sum(d["status"] == "rejected" for d in mine) == 2
    assert lifecycle.restored("w1") >= len(subscribers)


def test_two_workers_in_one_group_behave_as_one(lifecycle: Lifecycle) -> None:
    kafka, scenario = lifecycle.kafka, Scenario.new()
    mark = _mark(kafka)
    lifecycle.start("w2").wait_ready()
    kafka.wait_for(lambda: False not in _assigned(lifecycle), what="a rebalance")
    fresh = [fresh_subscriber() for _ in range(30)]
    # An hour on: every acknowledgement window of the earlier tests is closed.
    subscribers = lifecycle.opted_out + fresh
    sends = [scenario.send(lifecycle.sender, s, 3600) for s in subscribers]
    for send in sends:
        kafka.send(send)

    decisions = kafka.await_decisions(sends, timeout=120)

    for send in sends:
        expected = 200 if send["to"] in lifecycle.opted_out else None
        assert decisions[send["request_id"]]["error_code"] == expected
    # The rebalance itself repeated nothing that was decided before it.
    _assert_decided_once_since(kafka, mark, sends)


def _mark(kafka: KafkaClient) -> dict[str, int]:
    """How many decisions were seen so far, once no more arrive."""
    topics = (kafka.topics.approved, kafka.topics.rejected)
    seen: dict[str, int] | None = None
    while True:
        kafka.poll_outputs(timeout=2)
        now = {topic: len(kafka.seen.get(topic, [])) for topic in topics}
        if now == seen:
            return now
        seen = now


def _assert_decided_once_since(
    kafka: KafkaClient, mark: dict[str, int], sends: list[dict[str, Any]]
) -> None:
    """Each send has one decision after the mark; earlier requests only repeat.

    A request decided before an earlier test's SIGKILL can be answered once
    more at a later rebalance (see the README's limits); it must then repeat
    its first decision, never contradict it.
    """
    kafka.poll_outputs(timeout=3)
    expected = {s["request_id"] for s in sends}
    first: dict[str, dict[str, Any]] = {}
    published: dict[str, list[str]] = {}
    for topic, seen_before in mark.items():
        records = kafka.seen.get(topic, [])
        positions = kafka.positions.get(topic, [])
        for i, (record, (partition, offset, _)) in enumerate(
            zip(records, positions, strict=True)
        ):
            request_id = record["request_id"]
            earlier = first.setdefault(request_id, record)
            contradicts = _content(record) != _content(earlier)
            assert not contradicts, f"{request_id} has contradicting decisions"
            if i >= seen_before and request_id in expected:
                where = f"{topic}[{partition}]@{offset}"
                published.setdefault(request_id, []).append(where)
    repeated = {r: w for r, w in published.items() if len(w) > 1}
    assert not repeated, f"decisions published more than once: {repeated}"
    assert set(published) == expected


def _assigned(lifecycle: Lifecycle) -> list[bool]:
    return [w.get("/ready")[0] == 200 for w in lifecycle.workers.values()]


def test_sigterm_loses_and_doubles_no_decision(lifecycle: Lifecycle) -> None:
    kafka, scenario = lifecycle.kafka, Scenario.new()
    subscribers = [fresh_subscriber() for _ in range(300)]
    sends = [scenario.send(lifecycle.sender, s, 0) for s in subscribers]
    mark = _mark(kafka)
    for send in sends[:150]:
        kafka.send(send)
    kafka.wait_for(lambda: len(kafka.decisions(s["request_id"] for s in sends)) > 20)

    assert lifecycle.workers["w2"].terminate() == 0
    for send in sends[150:]:
        kafka.send(send)
    kafka.await_decisions(sends, timeout=180)

    # One decision each, and the rebalance the stopped worker caused made
    # the survivor repeat none of what it had decided before.
    _assert_decided_once_since(kafka, mark, sends)


def test_a_clean_restart_does_not_reread_the_changelog(lifecycle: Lifecycle) -> None:
    worker = lifecycle.workers["w1"]
    assert worker.terminate() == 0

    worker.start().wait_ready()
    kafka, scenario = lifecycle.kafka, Scenario.new()
    checks = [scenario.send(lifecycle.sender, s, 3600) for s in lifecycle.opted_out]
    for send in checks:
        kafka.send(send)
    decisions = kafka.await_decisions(checks, timeout=120)

    assert {d["error_code"] for d in decisions.values()} == {200}
    assert lifecycle.restored("w1") < len(lifecycle.opted_out) / 2
