"""Logging set-up that costs nothing per message."""

from __future__ import annotations

import logging

import faust
import pytest

from app.logs import drop_spinner


@pytest.mark.parametrize(("dropped", "level"), [(False, logging.DEBUG), (True, 0)])
def test_without_the_spinner_faust_leaves_the_log_level_alone(
    dropped: bool, level: int
) -> None:
    worker = faust.Worker(faust.App("probe", broker="memory://"), quiet=True)
    if dropped:
        drop_spinner(worker)
    logger = logging.Logger("probe")
    logger.addHandler(logging.NullHandler())

    worker.on_setup_root_logger(logger, logging.WARNING)

    assert logger.level == level
