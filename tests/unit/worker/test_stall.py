from app.worker.stall import StallWatch, partition_is_stuck


def test_a_partition_behind_its_log_with_a_quiet_agent_is_stuck() -> None:
    assert partition_is_stuck(highwater=10, position=4, idle_for=6, quiet=5)
    assert partition_is_stuck(highwater=None, position=0, idle_for=6, quiet=5)


def test_a_caught_up_or_busy_partition_is_not_stuck() -> None:
    assert not partition_is_stuck(highwater=4, position=4, idle_for=300, quiet=5)
    assert not partition_is_stuck(highwater=10, position=4, idle_for=1, quiet=5)


def test_a_rejoin_is_asked_after_patience_and_then_once_per_patience() -> None:
    watch = StallWatch(patience=30)

    assert [watch.look(t, stuck=True) for t in (0, 10, 20)] == [False] * 3
    assert watch.look(30, stuck=True)
    assert not watch.look(45, stuck=True)
    assert watch.look(60, stuck=True)


def test_records_flowing_again_or_a_rebalance_start_the_watch_over() -> None:
    watch = StallWatch(patience=30)
    watch.look(0, stuck=True)
    assert not watch.look(25, stuck=False)
    assert not watch.look(40, stuck=True)
    assert not watch.look(65, stuck=True)
    assert watch.look(70, stuck=True)

    watch.reset()
    assert not watch.look(75, stuck=True)
    assert watch.look(105, stuck=True)
