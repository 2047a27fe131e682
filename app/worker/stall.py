"""Noticing an assignment whose input partitions deliver nothing.

Now and then, after a worker restarts into a group that still holds its
killed predecessor (on the embedded broker, each time after two joins were
answered with the same generation), Faust reports the recovery complete and
the worker ready, and then its streams receive nothing: the input partitions are
assigned, their records are fetched (the high watermarks are known), and no
record reaches the agent. Resuming the consumer's flow and partitions does
not help (tried: both flow flags were already on); a new assignment does.
The cause is not found yet (README, Limits).

So the worker watches its inputs: a partition is stuck while it has records
beyond the worker's position, or has never answered a fetch, and no input
record at all reached the agent since the previous look. When some
partition stays stuck for `patience` seconds outside a rebalance, the worker
asks the group for a new assignment, and again after each further
`patience` seconds while it stays stuck.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StallWatch:
    """Decides, from periodic looks at the inputs, when to ask for a rejoin."""

    patience: float
    _stuck_since: float | None = None

    def look(self, now: float, stuck: bool) -> bool:
        """Record one look; True when a new assignment is due now."""
        if not stuck:
            self._stuck_since = None
            return False
        if self._stuck_since is None:
            self._stuck_since = now
            return False
        if now - self._stuck_since < self.patience:
            return False
        self._stuck_since = now  # the next request only after more patience
        return True

    def reset(self) -> None:
        """A rebalance gives the new assignment a fresh start."""
        self._stuck_since = None


def partition_is_stuck(
    highwater: int | None, position: int, idle_for: float, quiet: float
) -> bool:
    """One assigned input partition, looked at from the agent's side.

    `idle_for` is the time since any input record reached the agent; `quiet`
    is the time between two looks.
    """
    if idle_for < quiet:
        return False
    return highwater is None or highwater > position
