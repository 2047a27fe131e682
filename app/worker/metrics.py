"""Prometheus metrics of the worker, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECISIONS = Counter(
    "stopguard_decisions_total",
    "Send requests decided, by status and error code.",
    ["status", "error_code"],
)
CONSENT_EVENTS = Counter(
    "stopguard_consent_events_total", "Consent events written, by action.", ["action"]
)
DEAD_LETTERS = Counter(
    "stopguard_dead_letters_total", "Records sent to the dead-letter topic.", ["topic"]
)
PLAIN_TEXTS = Counter(
    "stopguard_plain_texts_total", "Inbound messages that were no keyword."
)
REKEYED = Counter(
    "stopguard_rekeyed_total",
    "Records forwarded because they arrived on another partition than their "
    "subscriber's.",
    ["topic"],
)
REPEATED_REQUESTS = Counter(
    "stopguard_repeated_requests_total",
    "Send requests seen before, answered with their recorded decision.",
)
REDELIVERED = Counter(
    "stopguard_redelivered_records_total",
    "Input records skipped because they were already handled: delivered again "
    "after a seek, or covered by a previous owner's hand-back.",
)
STALL_REJOINS = Counter(
    "stopguard_stall_rejoins_total",
    "Times assigned input partitions delivered nothing for the stall patience "
    "and the worker asked its group for a new assignment.",
)
HELD_RECORDS = Gauge(
    "stopguard_held_records",
    "Records buffered for event-time alignment of inbound messages and sends.",
)
DECISION_LATENCY = Histogram(
    "stopguard_decision_latency_seconds",
    "From a send request's arrival at the worker to its decision.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "stopguard_consumer_lag",
    "Records between the worker's position and the log end.",
    ["topic", "partition"],
)
REGISTERED_NUMBERS = Gauge(
    "stopguard_registered_numbers", "Numbers in the sms.numbers registry."
)
CHANGELOG_RESTORED = Counter(
    "stopguard_changelog_records_restored_total",
    "Changelog records read into local state at start-up or by standbys.",
    ["table"],
)
