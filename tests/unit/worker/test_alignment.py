from __future__ import annotations

from app.worker.alignment import EventTimeAligner

INBOUND, REQUESTS = "sms.inbound", "sms.outbound.requests"


def aligner(max_idle: float = 5.0) -> EventTimeAligner[str]:
    return EventTimeAligner(inbound_topics=(INBOUND,), max_idle=max_idle)


def never(topic: str, partition: int) -> bool:
    return False


def always(topic: str, partition: int) -> bool:
    return True


def test_a_send_waits_for_a_lagging_inbound_partition() -> None:
    merge = aligner()
    merge.push("send", REQUESTS, 0, timestamp=100, now=0, item="send@100")

    assert list(merge.release(now=1, caught_up=never)) == []
    merge.push("inbound", INBOUND, 0, timestamp=90, now=1, item="stop@90")
    assert list(merge.release(now=1, caught_up=never)) == ["stop@90"]
    merge.push("inbound", INBOUND, 0, timestamp=110, now=2, item="text@110")
    assert list(merge.release(now=2, caught_up=never)) == ["send@100", "text@110"]


def test_a_caught_up_inbound_partition_lets_sends_through_at_once() -> None:
    merge = aligner()
    merge.push("send", REQUESTS, 0, timestamp=100, now=0, item="send")

    assert list(merge.release(now=0, caught_up=always)) == ["send"]


def test_the_idle_bound_releases_a_send() -> None:
    merge = aligner(max_idle=2.0)
    merge.push("send", REQUESTS, 0, timestamp=100, now=0, item="send")

    assert list(merge.release(now=1.9, caught_up=never)) == []
    assert list(merge.release(now=2.0, caught_up=never)) == ["send"]


def test_a_source_that_keeps_delivering_older_records_holds_the_send() -> None:
    merge = aligner(max_idle=2.0)
    merge.push("send", REQUESTS, 0, timestamp=100, now=0, item="send@100")
    for second in range(10):
        merge.push("inbound", INBOUND, 0, second, now=second, item=f"old@{second}")
        list(merge.release(now=second, caught_up=never))

    assert list(merge.release(now=10.5, caught_up=never)) == []
    assert list(merge.release(now=11.0, caught_up=never)) == ["send@100"]


def test_records_merge_in_event_time_order() -> None:
    merge = aligner()
    for ts, kind in [(10, "send"), (30, "send"), (50, "send")]:
        merge.push(kind, REQUESTS, 0, ts, 0, f"{kind}@{ts}")  # type: ignore[arg-type]
    for ts in (20, 40, 60):
        merge.push("inbound", INBOUND, 0, ts, 0, f"inbound@{ts}")

    released = list(merge.release(now=0, caught_up=never))

    assert released == [
        "send@10",
        "inbound@20",
        "send@30",
        "inbound@40",
        "send@50",
        "inbound@60",
    ]


def test_partitions_do_not_wait_for_each_other() -> None:
    merge = aligner()
    merge.push("send", REQUESTS, 0, 100, 0, "p0-send")
    merge.push("send", REQUESTS, 1, 100, 0, "p1-send")

    released = list(merge.release(now=0, caught_up=lambda t, p: p == 1))

    assert released == ["p1-send"]
    assert len(merge) == 1


def test_revoked_partitions_hand_back_their_records() -> None:
    merge = aligner()
    merge.push("send", REQUESTS, 3, 100, 0, "held")

    assert merge.forget([3]) == ["held"]
    assert len(merge) == 0
