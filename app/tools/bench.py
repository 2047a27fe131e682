"""`stopguard bench`: throughput, latency, memory and replay figures (issue 5).

Every phase gets its own topic prefix and app id on one broker (the embedded
one unless STOPGUARD_BOOTSTRAP_SERVERS is set), so phases never read each
other's records. Workers are real `python -m app run` processes; the
benchmark only produces records and reads decisions back.

Phases, in order:

1. throughput: a backlog of send requests (with some inbound messages) is
   produced first, then one worker, later two in one group, decide it all;
2. baseline: a bare consume, parse and produce loop over the same backlog,
   and the Faust floor: a Faust worker that answers every send without any
   rules (app/tools/faust_floor.py);
3. latency: sends at a fixed rate, produce to decision readable;
4. recovery: opt-outs written straight into the consent changelog, then a
   worker with an empty data directory restores them;
5. replay: `stopguard audit` over the throughput phase's topics.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from rich.console import Console
from rich.table import Table

from app.errors import BrokerError
from app.models import InboundMessage, format_time
from app.rules.consent import SubscriberConsent, apply_inbound
from app.rules.numbers import SenderProfile, subscriber_number
from app.settings import Settings
from app.tools.admin import admin_client, apply_topics
from app.tools.broker import EmbeddedBroker, free_port
from app.tools.clients import producer, reader
from app.topics import TopicCatalog, load_catalog
from app.worker.partitioning import partition_for

RecordKind = Literal["inbound", "send"]


class Phase(StrEnum):
    """The parts of a run `--phase` can pick."""

    THROUGHPUT = "throughput"  # with the baseline, the Faust floor and the replay
    LATENCY = "latency"
    RECOVERY = "recovery"


# The targets; BENCHMARKS.md compares the figures with them.
TARGET_DECISIONS_PER_S = 20_000
TARGET_BASELINE_RATIO = 0.3
TARGET_P99_MS = 50.0
TARGET_RSS_MB = 400.0
TARGET_OPTOUTS = 10_000_000
TARGET_REPLAY_PER_S = 100_000

READY_TIMEOUT = 600.0
FAUST_FLOOR = ("app.tools.faust_floor",)
# How long after the last send of a latency run its decisions may still come.
LATENCY_GRACE = 3.0
DECISION_TIMEOUT = 900.0
# Ten per cent of the records are inbound messages; of those, this many are
# keywords (STOP and its variants, START) and the rest plain replies.
INBOUND_SHARE = 0.1
STOP_TEXTS = ("STOP", "stop", " Stop. ", "END", "unsub")
START_TEXTS = ("START", "unstop")
PLAIN_TEXTS = ("thanks", "what time?", "ok", "Who is this?", "see you")
AREA_CODES = ("212", "305", "312", "415", "512", "617", "646", "702", "718", "805")


# Pure helpers: percentiles, rates and the record mix ----------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def steady_rate(
    samples: Sequence[tuple[float, int]],
    total: int,
    low: float = 0.1,
    high: float = 0.9,
) -> float | None:
    """Records/s between the moments `low` and `high` of `total` were done.

    `samples` are (time, records done so far) in time order. Cutting the
    first and last tenth leaves out start-up, rebalances and the tail.
    """
    start = _first_reaching(samples, low * total)
    end = _first_reaching(samples, high * total)
    if start is None or end is None or end[0] <= start[0]:
        return None
    return (end[1] - start[1]) / (end[0] - start[0])


def _first_reaching(
    samples: Sequence[tuple[float, int]], count: float
) -> tuple[float, int] | None:
    for moment, done in samples:
        if done >= count:
            return moment, done
    return None


@dataclass(frozen=True)
class Sender:
    """One of our numbers, registered in `sms.numbers`."""

    number: str
    type: Literal["long_code", "toll_free", "short_code"]
    campaign_id: str | None = None

    def registration(self) -> bytes:
        value = {
            "number": self.number,
            "type": self.type,
            "country": "US",
            "campaign_id": self.campaign_id,
            "dnd": None,
        }
        return orjson.dumps(value)


@dataclass(frozen=True, slots=True)
class MixRecord:
    """One record of the benchmark's mix, before it gets its timestamp."""

    kind: RecordKind
    record_id: str
    subscriber: str
    sender: str
    text: str

    def encode(self, at: datetime) -> bytes:
        stamp = format_time(at)
        if self.kind == "send":
            value = {
                "request_id": self.record_id,
                "from": self.sender,
                "to": self.subscriber,
                "text": self.text,
                "requested_at": stamp,
            }
        else:
            value = {
                "message_id": self.record_id,
                "from": self.subscriber,
                "to": self.sender,
                "text": self.text,
                "received_at": stamp,
            }
        return orjson.dumps(value)


def bench_senders(campaigns: int = 3, per_campaign: int = 4) -> list[Sender]:
    """Campaign long codes, two standalone long codes, a toll-free and a short code."""
    senders = [
        Sender(f"+1201555{campaign}{index:03d}", "long_code", f"bench-{campaign}")
        for campaign in range(1, campaigns + 1)
        for index in range(per_campaign)
    ]
    senders += [
        Sender("+12015559001", "long_code"),
        Sender("+12015559002", "long_code"),
        Sender("+18445550100", "toll_free"),
        Sender("52020", "short_code"),
    ]
    return senders


def bench_subscribers(count: int, seed: int = 5) -> list[str]:
    """`count` distinct, valid US subscriber numbers, the same for a seed."""
    rng = random.Random(seed)
    found: set[str] = set()
    while len(found) < count:
        area = rng.choice(AREA_CODES)
        number = f"+1{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
        if number not in found and subscriber_number(number) == number:
            found.add(number)
    return sorted(found)


def record_mix(
    requests: int,
    subscribers: Sequence[str],
    senders: Sequence[Sender],
    seed: int = 5,
    tag: str = "bench",
    inbound_share: float = INBOUND_SHARE,
) -> Iterator[MixRecord]:
    """`requests` sends, with inbound messages mixed in at `inbound_share`.

    About a third of the inbound messages are keywords: STOP variants four
    times as often as START. Records are keyed by subscriber downstream.
    """
    rng = random.Random(seed)
    numbers = [sender.number for sender in senders]
    sent = received = 0
    while sent < requests:
        subscriber = rng.choice(subscribers)
        sender = rng.choice(numbers)
        if rng.random() < inbound_share:
            received += 1
            yield MixRecord(
                "inbound", f"{tag}-in-{received}", subscriber, sender, _reply(rng)
            )
        else:
            sent += 1
            text = f"Offer {sent}: 20% off this weekend"
            yield MixRecord("send", f"{tag}-req-{sent}", subscriber, sender, text)


def _reply(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.27:
        return rng.choice(STOP_TEXTS)
    if roll < 0.33:
        return rng.choice(START_TEXTS)
    return rng.choice(PLAIN_TEXTS)


class ConsentTemplate:
    """Consent rows as the worker writes them, for many subscribers at once.

    One row is built by the real rules (a STOP applied to empty consent) and
    serialised by the real model; the others substitute subscriber and
    message id, which is what the worker's rows differ by.
    """

    _SUBSCRIBER = "+12125550000"
    _MESSAGE = "bench-template-message"

    def __init__(self, settings: Settings, sender: Sender) -> None:
        from app.keyword_policy import load_policy

        consent = SubscriberConsent(subscriber=self._SUBSCRIBER)
        message = InboundMessage.model_validate(
            {
                "message_id": self._MESSAGE,
                "from": self._SUBSCRIBER,
                "to": sender.number,
                "text": "STOP",
                "received_at": datetime(2025, 1, 1, tzinfo=UTC),
            }
        )
        profile = SenderProfile(
            sender.number, sender.type, "US", sender.campaign_id, None
        )
        apply_inbound(consent, message, profile, load_policy(settings))
        self.raw = consent.to_json()

    def row(self, subscriber: str, message_id: str) -> bytes:
        return self.raw.replace(self._SUBSCRIBER.encode(), subscriber.encode()).replace(
            self._MESSAGE.encode(), message_id.encode()
        )


def optout_subscriber(index: int) -> str:
    """The index-th subscriber of the recovery phase (valid US numbers)."""
    area = AREA_CODES[index % len(AREA_CODES)]
    rest = index // len(AREA_CODES)
    return f"+1{area}{200 + rest // 10_000 % 800}{rest % 10_000:04d}"


# Options and results ---------------------------------------------------------


@dataclass(frozen=True)
class BenchOptions:
    # At a few hundred decisions/s on two shared cores, 30,000 sends keep
    # the full run near ten minutes; --requests asks for more.
    requests: int = 30_000
    subscribers: int = 50_000
    # A worker restores about 4,000 rows/s on the embedded broker; 10M
    # (the target) takes --optouts 10000000 and the better part of an hour.
    optouts: int = 250_000
    latency_rate: int = 2_000
    latency_seconds: float = 20.0
    latency_warmup: float = 2.0
    max_workers: int = 2
    profile: Path | None = None
    seed: int = 5
    phases: tuple[Phase, ...] = tuple(Phase)

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        sizes: dict[str, Any] = {
            "requests": 5_000,
            "optouts": 50_000,
            "latency_seconds": 6.0,
            "max_workers": 1,
        }
        return cls(**{**sizes, **overrides})


@dataclass
class ThroughputFigures:
    workers: int
    requests: int
    decided: int
    startup_s: float | None  # worker process start to its first decision
    ready_s: float | None  # worker process start to /ready answering 200
    elapsed_s: float | None  # first decision to last
    decisions_per_s: float | None  # first decision to last
    steady_decisions_per_s: float | None  # between 10 % and 90 % decided
    peak_rss_mb: list[float] = field(default_factory=list)


@dataclass
class BaselineFigures:
    records: int
    requests: int
    elapsed_s: float
    requests_per_s: float
    steady_requests_per_s: float | None


@dataclass
class LatencyFigures:
    offered_rate: int
    seconds: float
    measured: int
    missing: int
    achieved_rate: float
    median_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass
class RecoveryFigures:
    optouts: int
    produce_s: float
    recovery_s: float | None
    rss_after_mb: float | None
    peak_rss_mb: float | None
    idle_rss_mb: float | None  # an empty worker after /ready, for the slope
    extrapolated_to: int
    extrapolated_recovery_s: float | None
    extrapolated_rss_mb: float | None
    # A first worker restored only the first `first_optouts` rows: the RSS
    # difference between the two restores is the growth per row.
    first_optouts: int | None = None
    first_rss_mb: float | None = None


@dataclass
class ReplayFigures:
    measured: bool
    records: int = 0
    seconds: float = 0.0
    records_per_s: float | None = None
    discrepancies: int | None = None
    # The two halves of the audit apart: the same reader with no replay
    # (what the broker and the client allow), and the replay of records
    # already in memory.
    read_only_per_s: float | None = None
    in_memory_per_s: float | None = None
    note: str = ""


@dataclass
class BenchReport:
    options: dict[str, Any]
    machine: dict[str, Any]
    produce_per_s: float | None = None
    throughput: list[ThroughputFigures] = field(default_factory=list)
    baseline: BaselineFigures | None = None
    faust_floor: ThroughputFigures | None = None
    latency: list[LatencyFigures] = field(default_factory=list)
    recovery: RecoveryFigures | None = None
    replay: ReplayFigures | None = None

    def baseline_ratio(self) -> float | None:
        return rate_ratio(self._one_worker(), self.baseline)

    def floor_ratio(self) -> float | None:
        """One worker's decisions against the Faust floor's answers."""
        return rate_ratio(self._one_worker(), self.faust_floor)

    def _one_worker(self) -> ThroughputFigures | None:
        return next((t for t in self.throughput if t.workers == 1), None)

    def to_json(self) -> str:
        document = asdict(self)
        document["baseline_ratio"] = self.baseline_ratio()
        document["faust_floor_ratio"] = self.floor_ratio()
        document["options"] = {k: str(v) for k, v in self.options.items()}
        return json.dumps(document, separators=(",", ":"))


def rate_ratio(
    mine: ThroughputFigures | None, theirs: ThroughputFigures | BaselineFigures | None
) -> float | None:
    """Steady rate over steady rate (first→last where there is no steady one)."""
    numerator, denominator = _per_s(mine), _per_s(theirs)
    return numerator / denominator if numerator and denominator else None


def _per_s(figures: ThroughputFigures | BaselineFigures | None) -> float | None:
    if isinstance(figures, BaselineFigures):
        return figures.steady_requests_per_s or figures.requests_per_s
    if isinstance(figures, ThroughputFigures):
        return figures.steady_decisions_per_s or figures.decisions_per_s
    return None


def machine_facts() -> dict[str, Any]:
    """CPU count and model, and memory, as BENCHMARKS.md records them."""
    facts: dict[str, Any] = {"nproc": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next(
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        )
        facts["cpu"] = model
        meminfo = Path("/proc/meminfo").read_text().splitlines()[0]
        facts["memory_mb"] = int(meminfo.split()[1]) // 1024
        facts["load_average"] = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return facts


# Stacks and workers --------------------------------------------------------


def require_broker(settings: Settings, phase: str) -> None:
    """Fail with a clear message when the broker went away between phases."""
    host, _, port = settings.require_bootstrap_servers().split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), 5).close()
    except OSError as exc:
        raise BrokerError(
            f"the broker at {host}:{port} does not answer before phase {phase!r} "
            f"({exc}); was the embedded broker stopped by another process?"
        ) from exc


@dataclass
class Stack:
    """One phase's topics and app id on the shared broker."""

    settings: Settings
    catalog: TopicCatalog

    @classmethod
    def create(cls, base: Settings, run: str, phase: str, workdir: Path) -> Stack:
        name = f"bench-{run}-{phase}"
        settings = base.model_copy(
            update={
                "topic_prefix": f"{name}.",
                "app_id": name,
                "data_dir": workdir / phase,
            }
        )
        catalog = load_catalog(settings)
        apply_topics(settings, catalog)
        return cls(settings, catalog)

    @property
    def decision_topics(self) -> list[str]:
        return [self.catalog.approved, self.catalog.rejected]


@dataclass
class Worker:
    """A `python -m app run` process with its own data directory and port."""

    stack: Stack
    name: str
    # The module `python -m` runs: the worker, or the Faust floor.
    command: tuple[str, ...] = ("app", "run")
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> Worker:
        settings = self.stack.settings
        data_dir = settings.data_dir / self.name
        shutil.rmtree(data_dir, ignore_errors=True)
        env = {
            **os.environ,
            "STOPGUARD_BOOTSTRAP_SERVERS": settings.require_bootstrap_servers(),
            "STOPGUARD_TOPIC_PREFIX": settings.topic_prefix,
            "STOPGUARD_APP_ID": settings.app_id,
            "STOPGUARD_DATA_DIR": str(data_dir),
            "STOPGUARD_WEB_PORT": str(self.web_port),
            "STOPGUARD_LOG_LEVEL": "WARNING",
            "STOPGUARD_BROKER_FLAVOUR": settings.broker_flavour,
        }
        if settings.partitions:
            env["STOPGUARD_PARTITIONS"] = str(settings.partitions)
        self.log_path = settings.data_dir / f"{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.started = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def is_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.web_port}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Seconds from process start until /ready answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.is_ready():
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready in {timeout:.0f}s")

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(
                f"worker {self.name} exited with {self.process.returncode}:\n"
                + "\n".join(tail)
            )

    def memory_mb(self, field_name: str = "VmHWM") -> float | None:
        """VmHWM (peak RSS) or VmRSS of the process, in MB."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        return None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class ReadyWatch(threading.Thread):
    """Notes when a worker's /ready first answers 200, off the main loop."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(daemon=True)
        self.worker = worker
        self.ready_s: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            if self.worker.is_ready():
                self.ready_s = time.monotonic() - self.worker.started
                return
            time.sleep(0.1)


# Producing -------------------------------------------------------------------


def bulk_producer(settings: Settings, **extra: Any) -> Producer:
    options = {
        "linger.ms": 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 500_000,
        **extra,
    }
    return producer(settings, **options)


def send(
    client: Producer,
    topic: str,
    key: bytes,
    value: bytes,
    partition: int | None = None,
) -> None:
    """Produce one record, waiting for queue room instead of failing."""
    while True:
        try:
            if partition is None:
                client.produce(topic, value, key)
            else:
                client.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            client.poll(0.05)


def finish(client: Producer, timeout: float = 300.0) -> None:
    remaining = client.flush(timeout)
    if remaining:
        raise RuntimeError(f"{remaining} records not delivered in {timeout:.0f}s")


def register_senders(stack: Stack, senders: Iterable[Sender]) -> None:
    client = producer(stack.settings)
    for sender in senders:
        send(
            client, stack.catalog.numbers, sender.number.encode(), sender.registration()
        )
    finish(client)


def produce_backlog(
    stack: Stack, records: Sequence[MixRecord], start: datetime
) -> float:
    """Produce the mix keyed by subscriber, a millisecond apart; records/s."""
    client = bulk_producer(stack.settings)
    topics = {"send": stack.catalog.requests, "inbound": stack.catalog.inbound}
    began = time.perf_counter()
    for index, record in enumerate(records):
        at = start + timedelta(milliseconds=index)
        send(client, topics[record.kind], record.subscriber.encode(), record.encode(at))
        if index % 1000 == 0:
            client.poll(0)
    finish(client)
    return len(records) / (time.perf_counter() - began)


# Reading decisions -------------------------------------------------------------


def assign_from_start(consumer: Consumer, topics: list[str]) -> None:
    metadata = consumer.list_topics(timeout=30)
    assignment = [
        TopicPartition(topic, partition, 0)
        for topic in topics
        for partition in metadata.topics[topic].partitions
    ]
    consumer.assign(assignment)


def request_ids(consumer: Consumer, timeout: float) -> Iterator[tuple[float, str]]:
    """(arrival time, request id) of each decision read in one poll batch."""
    for message in consumer.consume(2000, timeout):
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            raise RuntimeError(f"reading {message.topic()}: {error}")
        arrived = time.monotonic()
        yield arrived, orjson.loads(message.value() or b"{}")["request_id"]


# Phase 1: throughput -------------------------------------------------------------


@dataclass
class Progress:
    """When each share of the expected decisions had been read."""

    expected: int
    seen: set[str] = field(default_factory=set)
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, moments: Iterable[tuple[float, str]]) -> None:
        last = None
        for arrived, request_id in moments:
            self.seen.add(request_id)
            last = arrived
        if last is not None:
            self.samples.append((last, len(self.seen)))

    @property
    def complete(self) -> bool:
        return len(self.seen) >= self.expected


def measure_throughput(
    stack: Stack,
    workers: int,
    requests: int,
    profile: Path | None = None,
    command: tuple[str, ...] = Worker.command,
) -> ThroughputFigures:
    """Start `workers` on the backlog already in `stack`; time every decision."""
    consumer = reader(stack.settings, **{"enable.partition.eof": False})
    assign_from_start(consumer, stack.decision_topics)
    started = [Worker(stack, f"worker-{n}", command).start() for n in range(workers)]
    watch = ReadyWatch(started[0])
    watch.start()
    progress = Progress(requests)
    spy: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + DECISION_TIMEOUT
        while not progress.complete and time.monotonic() < deadline:
            progress.add(request_ids(consumer, 0.5))
            for worker in started:
                worker.check_alive()
            if profile and spy is None and progress.samples:
                spy = start_profiler(started[0].pid, profile)
        peaks = [w.memory_mb("VmHWM") or 0.0 for w in started]
    finally:
        stop_profiler(spy)
        watch.done.set()
        for worker in started:
            worker.stop()
        consumer.close()
    return _throughput_figures(workers, progress, started[0].started, watch, peaks)


def _throughput_figures(
    workers: int,
    progress: Progress,
    started: float,
    watch: ReadyWatch,
    peaks: list[float],
) -> ThroughputFigures:
    samples = progress.samples
    figures = ThroughputFigures(
        workers=workers,
        requests=progress.expected,
        decided=len(progress.seen),
        startup_s=None,
        ready_s=watch.ready_s,
        elapsed_s=None,
        decisions_per_s=None,
        steady_decisions_per_s=steady_rate(samples, progress.expected),
        peak_rss_mb=[round(p, 1) for p in peaks],
    )
    if samples:
        first, last = samples[0][0], samples[-1][0]
        figures.startup_s = first - started
        figures.elapsed_s = last - first
        if last > first:
            figures.decisions_per_s = (samples[-1][1] - samples[0][1]) / (last - first)
    return figures


def start_profiler(pid: int, output: Path) -> subprocess.Popen[bytes] | None:
    """py-spy, sampling without pausing the worker, in collapsed-stack form."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(binary).exists():
        return None
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [binary, "record", "--pid", str(pid), "--rate", "50", "--nonblocking"]
    command += ["--format", "raw", "--output", str(output)]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_profiler(spy: subprocess.Popen[bytes] | None) -> None:
    # py-spy writes its output when interrupted, like Ctrl-C.
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()


# Phase 2: the bare loop baseline ---------------------------------------------------


def measure_baseline(stack: Stack, records: int, requests: int) -> BaselineFigures:
    """Consume every input record, parse it, produce a reply: no decisions."""
    output = f"{stack.settings.topic_prefix}baseline"
    admin = admin_client(stack.settings)
    created = admin.create_topics([NewTopic(output, stack.catalog.partitions, 1)])
    created[output].result(30)
    consumer = reader(stack.settings, **{"enable.partition.eof": False})
    assign_from_start(consumer, [stack.catalog.requests, stack.catalog.inbound])
    client = producer(stack.settings, **{"enable.idempotence": False, "acks": "all"})
    done, samples, began = 0, [], 0.0
    deadline = time.monotonic() + DECISION_TIMEOUT
    while done < records and time.monotonic() < deadline:
        batch = consumer.consume(500, 0.5)
        if batch and not began:
            began = time.monotonic()
        for message in batch:
            if message.error() is not None:
                continue
            value = json.loads(message.value() or b"{}")
            value["status"] = "approved"
            send(client, output, message.key() or b"", json.dumps(value).encode())
        client.poll(0)
        done += len(batch)
        samples.append((time.monotonic(), done))
    finish(client)
    elapsed = time.monotonic() - began
    consumer.close()
    return BaselineFigures(
        records=done,
        requests=requests,
        elapsed_s=elapsed,
        requests_per_s=requests / elapsed,
        steady_requests_per_s=_scaled(steady_rate(samples, records), requests, records),
    )


def _scaled(rate: float | None, part: int, whole: int) -> float | None:
    """A rate of all records, expressed as the rate of `part` of them."""
    return rate * part / whole if rate is not None else None


# Phase 3: latency at a fixed rate ------------------------------------------------


class Arrivals(threading.Thread):
    """Reads decisions as they appear and notes when each request's came."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        low_latency = {"fetch.wait.max.ms": 5, "enable.partition.eof": False}
        self.consumer = reader(stack.settings, **low_latency)
        assign_from_start(self.consumer, stack.decision_topics)
        self.arrived: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                for moment, request_id in request_ids(self.consumer, 0.05):
                    self.arrived.setdefault(request_id, moment)
        finally:
            self.consumer.close()


def measure_latency(
    stack: Stack, options: BenchOptions, rates: Sequence[int], mix: Sequence[MixRecord]
) -> tuple[list[LatencyFigures], float | None]:
    """Offer sends at each fixed rate in turn to one ready worker.

    Returns the figures per rate and the worker's RSS when ready and idle.
    """
    worker = Worker(stack, "worker-0").start()
    figures: list[LatencyFigures] = []
    try:
        worker.wait_ready()
        idle_rss = worker.memory_mb("VmRSS")
        arrivals = Arrivals(stack)
        arrivals.start()
        for number, rate in enumerate(rates):
            records = [r for r in mix if r.record_id.startswith(f"live{number}-")]
            sent = offer(stack, records, rate, options.latency_seconds)
            time.sleep(LATENCY_GRACE)
            start = min(sent.values(), default=0.0) + options.latency_warmup
            window = LatencyWindow(rate, options.latency_seconds, start)
            figures.append(latency_figures(window, sent, dict(arrivals.arrived)))
            worker.check_alive()
        arrivals.stopping.set()
        arrivals.join(10)
    finally:
        worker.stop()
    return figures, idle_rss


def offer(
    stack: Stack, mix: Sequence[MixRecord], rate: int, seconds: float
) -> dict[str, float]:
    """Produce the mix at `rate` records/s, stamped now; when each send left."""
    client = producer(stack.settings, **{"linger.ms": 1})
    topics = {"send": stack.catalog.requests, "inbound": stack.catalog.inbound}
    sent: dict[str, float] = {}
    began = time.monotonic()
    for index, record in enumerate(mix):
        due = began + index / rate
        if due - began >= seconds:
            break
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        value = record.encode(datetime.now(UTC))
        send(client, topics[record.kind], record.subscriber.encode(), value)
        client.poll(0)
        if record.kind == "send":
            sent[record.record_id] = time.monotonic()
    finish(client)
    return sent


@dataclass(frozen=True)
class LatencyWindow:
    rate: int
    seconds: float
    measured_from: float  # sends before this moment are the warm-up


def latency_figures(
    window: LatencyWindow, sent: dict[str, float], arrived: dict[str, float]
) -> LatencyFigures:
    """Produce-to-readable latency of the sends after the warm-up."""
    counted = {rid: at for rid, at in sent.items() if at >= window.measured_from}
    latencies = [
        (arrived[rid] - at) * 1000 for rid, at in counted.items() if rid in arrived
    ]
    span = max(sent.values()) - min(sent.values()) if sent else 0.0
    return LatencyFigures(
        offered_rate=window.rate,
        seconds=window.seconds,
        measured=len(latencies),
        missing=len(counted) - len(latencies),
        achieved_rate=len(sent) / span if span else 0.0,
        median_ms=percentile(latencies, 50) if latencies else None,
        p99_ms=percentile(latencies, 99) if latencies else None,
        max_ms=max(latencies) if latencies else None,
    )


# Phase 4: recovery of a large consent table --------------------------------------


def write_optouts(stack: Stack, sender: Sender, count: int, start: int = 0) -> float:
    """Consent rows in the changelog as the worker writes them; seconds taken."""
    template = ConsentTemplate(stack.settings, sender)
    topic = stack.catalog.consent_changelog
    partitions = stack.catalog.partitions
    client = bulk_producer(stack.settings)
    began = time.perf_counter()
    for index in range(start, start + count):
        subscriber = optout_subscriber(index)
        row = template.row(subscriber, f"bench-stop-{index}")
        partition = partition_for(subscriber, partitions)
        send(client, topic, subscriber.encode(), row, partition)
        if index % 5000 == 0:
            client.poll(0)
    finish(client, timeout=900)
    return time.perf_counter() - began


def measure_recovery(
    stack: Stack, options: BenchOptions, sender: Sender, idle_rss: float | None
) -> RecoveryFigures:
    # A recovering worker's RSS steps up by a fixed amount (fetch buffers,
    # memtables up to their cap, freed heap glibc keeps), so the growth per
    # row is measured between two restores: half of the rows, then all.
    first = options.optouts // 2
    produce_s = write_optouts(stack, sender, first)
    first_rss = _restored_rss(stack)
    produce_s += write_optouts(stack, sender, options.optouts - first, start=first)
    worker = Worker(stack, "worker-0").start()
    try:
        recovery_s: float | None = worker.wait_ready()
        rss_after = worker.memory_mb("VmRSS")
        peak = worker.memory_mb("VmHWM")
    except TimeoutError:
        recovery_s = rss_after = peak = None
    finally:
        worker.stop()
    figures = RecoveryFigures(
        optouts=options.optouts,
        produce_s=produce_s,
        recovery_s=recovery_s,
        rss_after_mb=rss_after,
        peak_rss_mb=peak,
        idle_rss_mb=idle_rss,
        extrapolated_to=TARGET_OPTOUTS,
        extrapolated_recovery_s=None,
        extrapolated_rss_mb=None,
        first_optouts=first if first_rss is not None else None,
        first_rss_mb=first_rss,
    )
    return extrapolate(figures)


def _restored_rss(stack: Stack) -> float | None:
    """VmRSS of a worker with an empty data directory once it is ready."""
    worker = Worker(stack, "worker-first").start()
    try:
        worker.wait_ready()
        return worker.memory_mb("VmRSS")
    except TimeoutError:
        return None
    finally:
        worker.stop()


def extrapolate(figures: RecoveryFigures) -> RecoveryFigures:
    """Linear in the number of opt-outs.

    The slope is the RSS growth between the two restores (half the rows, then
    all): a worker's memory steps up by a fixed amount once recovery starts,
    which a slope from the idle worker would count as growth per row. Without
    the first restore, the slope runs from the idle worker.
    """
    if figures.optouts >= figures.extrapolated_to:
        figures.extrapolated_to = figures.optouts
        figures.extrapolated_recovery_s = figures.recovery_s
        figures.extrapolated_rss_mb = figures.peak_rss_mb
        return figures
    scale = figures.extrapolated_to / figures.optouts
    if figures.recovery_s is not None:
        figures.extrapolated_recovery_s = figures.recovery_s * scale
    first, first_rss = figures.first_optouts, figures.first_rss_mb
    after = figures.rss_after_mb
    if first and first < figures.optouts and first_rss is not None and after:
        per_row = max(after - first_rss, 0.0) / (figures.optouts - first)
        extra_rows = figures.extrapolated_to - figures.optouts
        figures.extrapolated_rss_mb = after + per_row * extra_rows
    elif figures.peak_rss_mb is not None and figures.idle_rss_mb is not None:
        growth = max(figures.peak_rss_mb - figures.idle_rss_mb, 0.0)
        figures.extrapolated_rss_mb = figures.idle_rss_mb + growth * scale
    return figures


# Phase 5: audit replay ------------------------------------------------------------


def measure_replay(stack: Stack) -> ReplayFigures:
    """`stopguard audit` end to end, then its reading and its replay apart."""
    from app.keyword_policy import load_policy
    from app.tools.audit import AuditFilter, Auditor, read_records, run_audit

    # Each run parses every number afresh, as an audit in its own process
    # would: the mix made here filled the same cache.
    subscriber_number.cache_clear()
    summary = run_audit(stack.settings, AuditFilter())
    started = time.perf_counter()
    records = list(read_records(stack.settings))
    read_s = time.perf_counter() - started
    subscriber_number.cache_clear()
    started = time.perf_counter()
    auditor = Auditor(load_policy(stack.settings))
    auditor.add_all(records)
    auditor.finish()
    replay_s = time.perf_counter() - started
    return ReplayFigures(
        measured=True,
        records=summary.records,
        seconds=summary.seconds,
        records_per_s=summary.records_per_second,
        discrepancies=summary.discrepancies,
        read_only_per_s=len(records) / read_s if read_s > 0 else None,
        in_memory_per_s=len(records) / replay_s if replay_s > 0 else None,
    )


# The run -------------------------------------------------------------------------


def run_bench(
    settings: Settings, options: BenchOptions, console: Console
) -> BenchReport:
    """Every phase on one broker; the embedded one unless one is configured."""
    report = BenchReport(options=asdict(options), machine=machine_facts())
    with ExitStack() as cleanup:
        if not settings.bootstrap_servers:
            broker = cleanup.enter_context(EmbeddedBroker(free_port()))
            # As `stopguard run` does: the workers correct Tansu's end
            # offsets before they restore a table.
            settings = settings.model_copy(
                update={
                    "bootstrap_servers": broker.bootstrap_servers,
                    "broker_flavour": "tansu",
                }
            )
        workdir = Path(tempfile.mkdtemp(prefix="stopguard-bench-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        _phases(settings, options, console, report, workdir)
    return report


def _phases(
    settings: Settings,
    options: BenchOptions,
    console: Console,
    report: BenchReport,
    workdir: Path,
) -> None:
    bench = BenchRun(settings, options, console, workdir)
    if Phase.THROUGHPUT in options.phases:
        one = bench.throughput(report)
        report.replay = measure_replay(one)
        console.log(f"replay: {_n(report.replay.records_per_s)} records/s")
    idle_rss = bench.latency(report) if Phase.LATENCY in options.phases else None
    if Phase.RECOVERY in options.phases:
        report.recovery = measure_recovery(
            bench.stack("recovery"), options, bench.senders[0], idle_rss
        )
        console.log(f"recovery: {_n(report.recovery.recovery_s, 1)} s")


class BenchRun:
    """The records and stacks the phases of one run share."""

    def __init__(
        self, settings: Settings, options: BenchOptions, console: Console, workdir: Path
    ) -> None:
        self.settings = settings
        self.options = options
        self.console = console
        self.workdir = workdir
        self.run = uuid.uuid4().hex[:6]
        self.senders = bench_senders()
        self.subscribers = bench_subscribers(options.subscribers, options.seed)
        self.start = datetime.now(UTC) - timedelta(hours=1)

    def stack(self, phase: str) -> Stack:
        require_broker(self.settings, phase)
        created = Stack.create(self.settings, self.run, phase, self.workdir)
        register_senders(created, self.senders)
        return created

    def throughput(self, report: BenchReport) -> Stack:
        """Baseline, then one worker, then more; the one-worker stack."""
        options, log = self.options, self.console.log
        mix = list(
            record_mix(options.requests, self.subscribers, self.senders, options.seed)
        )
        log(f"mix: {len(mix):,} records, {options.requests:,} sends")
        one = self.stack("one")
        report.produce_per_s = produce_backlog(one, mix, self.start)
        log(f"backlog produced at {_n(report.produce_per_s)} records/s")
        report.baseline = measure_baseline(one, len(mix), options.requests)
        log(f"baseline: {_n(report.baseline.requests_per_s)} requests/s")
        floor = self.stack("floor")
        produce_backlog(floor, mix, self.start)
        report.faust_floor = measure_throughput(
            floor, 1, options.requests, command=FAUST_FLOOR
        )
        log(f"Faust floor: {_n(report.faust_floor.steady_decisions_per_s)} answers/s")
        for workers in range(1, options.max_workers + 1):
            target = one
            if workers > 1:
                target = self.stack(f"w{workers}")
                produce_backlog(target, mix, self.start)
            profile = options.profile if workers == 1 else None
            figures = measure_throughput(target, workers, options.requests, profile)
            report.throughput.append(figures)
            rate = _n(figures.steady_decisions_per_s)
            log(f"{workers} worker(s): {rate} decisions/s")
        return one

    def latency(self, report: BenchReport) -> float | None:
        """Latency at each offered rate; the idle worker's RSS."""
        rates = latency_rates(self.options.latency_rate, report.throughput)
        mix = _live_mix(self.options, rates, self.subscribers, self.senders)
        stack = self.stack("latency")
        report.latency, idle_rss = measure_latency(stack, self.options, rates, mix)
        for point in report.latency:
            rate, p99 = point.offered_rate, _n(point.p99_ms, 1)
            self.console.log(f"latency at {rate:,}/s: p99 {p99} ms")
        return idle_rss


def latency_rates(offered: int, throughput: Sequence[ThroughputFigures]) -> list[int]:
    """The offered rate, and first half the one-worker maximum if that is lower.

    Above a worker's maximum, latency only measures the growing queue; half
    the maximum shows what a worker that keeps up adds.
    """
    one = next((t for t in throughput if t.workers == 1), None)
    top = one.steady_decisions_per_s or one.decisions_per_s if one else None
    if top is None or top / 2 >= offered:
        return [offered]
    return [max(int(top / 2), 1), offered]


def _live_mix(
    options: BenchOptions,
    rates: Sequence[int],
    subscribers: Sequence[str],
    senders: Sequence[Sender],
) -> list[MixRecord]:
    mix: list[MixRecord] = []
    for number, rate in enumerate(rates):
        total = int(rate * options.latency_seconds * 1.2) + 1
        sends = int(total * (1 - INBOUND_SHARE))
        seed = options.seed + 1 + number
        mix += record_mix(sends, subscribers, senders, seed, f"live{number}")
    return mix


# The report ----------------------------------------------------------------------


def print_report(report: BenchReport, console: Console) -> None:
    table = Table("figure", "value", "target", title="stopguard bench")
    for row in report_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print(report.to_json(), soft_wrap=True, highlight=False)


def report_rows(report: BenchReport) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = [
        ("machine", f"{report.machine.get('nproc')} × {report.machine.get('cpu')}", "")
    ]
    if report.baseline:
        rate = report.baseline.steady_requests_per_s or report.baseline.requests_per_s
        rows.append(("bare loop baseline, requests/s", _n(rate), ""))
    for figures in report.throughput:
        label = f"{figures.workers} worker(s)"
        target = f"≥ {TARGET_DECISIONS_PER_S:,}" if figures.workers == 1 else ""
        rows += [
            (
                f"{label}: decisions/s (steady)",
                _n(figures.steady_decisions_per_s),
                target,
            ),
            (f"{label}: decisions/s (first→last)", _n(figures.decisions_per_s), ""),
            (
                f"{label}: decided / requests",
                f"{figures.decided:,} / {figures.requests:,}",
                "",
            ),
            (f"{label}: start-up to first decision, s", _n(figures.startup_s, 1), ""),
            (f"{label}: peak RSS, MB", ", ".join(map(_n, figures.peak_rss_mb)), ""),
        ]
    ratio = report.baseline_ratio()
    rows.append(("1 worker / baseline", _n(ratio, 4), f"≥ {TARGET_BASELINE_RATIO}"))
    if report.faust_floor:
        floor = report.faust_floor
        rows += [
            ("Faust floor, answers/s (steady)", _n(floor.steady_decisions_per_s), ""),
            ("Faust floor / baseline", _n(rate_ratio(floor, report.baseline), 4), ""),
            ("1 worker / Faust floor", _n(report.floor_ratio(), 2), ""),
        ]
    for lat in report.latency:
        rows += [
            (
                f"latency at {lat.offered_rate:,}/s: median, ms",
                _n(lat.median_ms, 1),
                "",
            ),
            (
                f"latency at {lat.offered_rate:,}/s: p99, ms",
                _n(lat.p99_ms, 1),
                f"< {TARGET_P99_MS:.0f}",
            ),
            (
                f"latency at {lat.offered_rate:,}/s: decided / late or missing",
                f"{lat.measured:,} / {lat.missing:,}",
                "",
            ),
        ]
    if report.recovery:
        rec = report.recovery
        if rec.first_optouts:
            rows.append(
                (
                    f"RSS after recovery of {rec.first_optouts:,}, MB",
                    _n(rec.first_rss_mb),
                    "",
                )
            )
        rows += [
            (f"recovery of {rec.optouts:,} opt-outs, s", _n(rec.recovery_s, 1), ""),
            (f"RSS after recovery of {rec.optouts:,}, MB", _n(rec.rss_after_mb), ""),
        ]
        target = f"< {TARGET_RSS_MB:.0f}"
        if rec.optouts >= TARGET_OPTOUTS:
            rows.append(
                (f"peak RSS, {rec.optouts:,} opt-outs, MB", _n(rec.peak_rss_mb), target)
            )
        else:
            rows += [
                (f"peak RSS, {rec.optouts:,} opt-outs, MB", _n(rec.peak_rss_mb), ""),
                (
                    f"peak RSS at {rec.extrapolated_to:,} (extrapolated, linear), MB",
                    _n(rec.extrapolated_rss_mb),
                    target,
                ),
            ]
    if report.replay:
        replay = report.replay
        value = _n(replay.records_per_s) if replay.measured else replay.note
        rows.append(("audit replay, records/s", value, f"≥ {TARGET_REPLAY_PER_S:,}"))
        if replay.measured:
            rows += [
                ("  reading alone, records/s", _n(replay.read_only_per_s), ""),
                ("  replay of read records, records/s", _n(replay.in_memory_per_s), ""),
            ]
    return rows


def _n(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def bench_command(settings: Settings, options: BenchOptions, console: Console) -> int:
    # Eleven "topic created" lines per phase would bury the progress lines.
    logging.getLogger("app.tools.admin").setLevel(logging.WARNING)
    report = run_bench(settings, options, console)
    print_report(report, console)
    return 0
