"""Audit, status, import and export against a real broker and worker."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from app.tools.audit import AuditFilter, AuditSummary, run_audit
from app.tools.consent_log import export_command
from app.tools.importer import import_command
from app.tools.status import status_from_api, status_from_topics
from tests.conftest import Stack
from tests.support.kafka import KafkaClient, Scenario, registered
from tests.support.numbers import fresh_number, fresh_subscriber, fresh_us_sender
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

QUIET = Console(file=io.StringIO())


def cli(stack: Stack, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**os.environ, **stack.env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


# The audit, on a stack of its own (the tampering test pollutes it) ----------


@pytest.fixture(scope="module")
def audit_stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack("audit")


@pytest.fixture(scope="module")
def audit_worker(audit_stack: Stack) -> Iterator[WorkerProcess]:
    worker = audit_stack.worker().start()
    try:
        yield worker.wait_ready()
    finally:
        worker.terminate()


@pytest.fixture(scope="module")
def audit_kafka(
    audit_stack: Stack, audit_worker: WorkerProcess
) -> Iterator[KafkaClient]:
    client = audit_stack.client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def recorded(audit_kafka: KafkaClient, audit_worker: WorkerProcess) -> dict[str, Any]:
    """STOP in a campaign, its acknowledgement, a rejection, START, a dead letter."""
    kafka, scenario = audit_kafka, Scenario.new()
    subscriber = fresh_subscriber()
    campaign = f"spring-{scenario.tag}"
    first = registered(kafka, audit_worker, fresh_us_sender(), campaign_id=campaign)
    second = registered(kafka, audit_worker, fresh_us_sender(), campaign_id=campaign)
    other = fresh_us_sender()

    stop = scenario.inbound(subscriber, first, "STOP", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    ack = scenario.send(first, subscriber, 30, "You are unsubscribed")
    kafka.send(ack)
    kafka.await_decisions([ack])
    blocked = scenario.send(second, subscriber, 60)
    elsewhere = scenario.send(other, subscriber, 61)
    kafka.send(blocked)
    kafka.send(elsewhere)
    kafka.await_decisions([blocked, elsewhere])
    start = scenario.inbound(subscriber, second, "START", 120)
    kafka.inbound(start)
    kafka.applied(start)
    again = scenario.send(first, subscriber, 180)
    kafka.send(again)
    marker = f"broken-{scenario.tag}"
    kafka.produce(kafka.topics.inbound, f'{{"{marker}": '.encode(), key=subscriber)
    decisions = kafka.await_decisions([again, ack, blocked, elsewhere])
    kafka.wait_for(lambda: bool(kafka.dead_letters(marker)), what="the dead letter")
    return {"subscriber": subscriber, "decisions": decisions, "blocked": blocked}


def test_recorded_scenario_decides_as_expected(recorded: dict[str, Any]) -> None:
    statuses = {
        rid: (d["status"], d["ack"]) for rid, d in recorded["decisions"].items()
    }
    assert sorted(statuses.values()) == [
        ("approved", False),
        ("approved", False),
        ("approved", True),
        ("rejected", False),
    ]


def test_audit_of_the_recorded_topics_is_clean(
    recorded: dict[str, Any], audit_stack: Stack, tmp_path: Path
) -> None:
    summary = run_audit(audit_stack.settings, AuditFilter())

    assert [f.kind for f in summary.findings if f.fatal] == []
    assert (summary.requests, summary.approved, summary.rejected) == (4, 3, 1)
    assert summary.acknowledgements == 1
    assert summary.dead_letters == 1

    result = cli(audit_stack, "audit", "--report", "report.jsonl", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "records/s" in result.stdout


def test_audit_names_a_rejected_send_written_as_approved(
    recorded: dict[str, Any],
    audit_stack: Stack,
    audit_kafka: KafkaClient,
    tmp_path: Path,
) -> None:
    request_id = recorded["blocked"]["request_id"]
    original = recorded["decisions"][request_id]
    forged = original | {"status": "approved", "error_code": None, "reason": None}
    audit_kafka.produce(audit_kafka.topics.approved, forged, key=recorded["subscriber"])
    audit_kafka.flush()

    result = cli(audit_stack, "audit", "--report", "report.jsonl", cwd=tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    findings = [
        json.loads(line)
        for line in (tmp_path / "report.jsonl").read_text().splitlines()
    ]
    named = {f["request_id"] for f in findings if f["fatal"]}
    assert named == {request_id}
    differs = next(f for f in findings if f["kind"] == "decision_differs")
    assert differs["replayed"]["status"] == "rejected"
    assert [e["keyword"] for e in differs["events"]] == ["STOP"]


def test_audit_of_one_subscriber_in_the_shared_stack_is_clean(
    kafka: KafkaClient, shared_stack: Stack
) -> None:
    scenario, subscriber, sender = Scenario.new(), fresh_subscriber(), fresh_us_sender()
    stop = scenario.inbound(subscriber, sender, "stop", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    sends = [scenario.send(sender, subscriber, s) for s in (10, 20)]
    for send in sends:
        kafka.send(send)
    kafka.await_decisions(sends)

    summary: AuditSummary = run_audit(
        shared_stack.settings, AuditFilter(subscriber=subscriber)
    )

    assert summary.findings == []
    assert (summary.approved, summary.rejected, summary.acknowledgements) == (1, 1, 1)


# Status, import and export on the shared stack -------------------------------


@pytest.fixture()
def opted_out(kafka: KafkaClient) -> dict[str, str]:
    scenario, subscriber, sender = Scenario.new(), fresh_subscriber(), fresh_us_sender()
    stop = scenario.inbound(subscriber, sender, "Stop!", 0)
    kafka.inbound(stop)
    kafka.applied(stop)
    return {"subscriber": subscriber, "sender": sender, "at": stop["received_at"]}


def test_status_api_answers_with_the_state_in_every_scope(
    opted_out: dict[str, str], shared_worker: WorkerProcess
) -> None:
    subscriber, sender = opted_out["subscriber"], opted_out["sender"]

    status, body = shared_worker.get(f"/subscribers/{subscriber}")

    assert status == 200
    assert body["opt_outs"] == {
        f"number:{sender}": {
            "opted_out_at": opted_out["at"],
            "keyword": "STOP",
            "number": sender,
            "ack_used": False,
        }
    }
    assert [e["keyword"] for e in body["history"]] == ["STOP"]
    assert status_from_api(shared_worker.url, subscriber) == body


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/subscribers/not-a-number", 400, id="malformed"),
        pytest.param("/subscribers/12345", 400, id="no-plus"),
        pytest.param(f"/subscribers/{fresh_number('+1650')}", 404, id="unknown"),
    ],
)
def test_status_api_refuses_what_it_cannot_answer(
    shared_worker: WorkerProcess, path: str, status: int
) -> None:
    code, body = shared_worker.get(path)

    assert code == status
    assert "error" in body


def test_status_from_topics_matches_the_worker(
    opted_out: dict[str, str], shared_worker: WorkerProcess, shared_stack: Stack
) -> None:
    subscriber = opted_out["subscriber"]

    rebuilt = status_from_topics(shared_stack.settings, subscriber)

    _, live = shared_worker.get(f"/subscribers/{subscriber}")
    assert rebuilt["history"] == live["history"]
    assert rebuilt["opt_outs"].keys() == live["opt_outs"].keys()


def test_export_lists_the_opt_outs_in_force(
    opted_out: dict[str, str], shared_stack: Stack, tmp_path: Path
) -> None:
    output = tmp_path / "optouts.csv"

    export_command(shared_stack.settings, output, QUIET)

    rows = list(csv.DictReader(output.open()))
    mine = [r for r in rows if r["subscriber"] == opted_out["subscriber"]]
    assert mine == [
        {
            "subscriber": opted_out["subscriber"],
            "scope": f"number:{opted_out['sender']}",
            "opted_out_at": opted_out["at"],
            "keyword": "STOP",
            "number": opted_out["sender"],
        }
    ]


def test_import_records_good_rows_and_reports_bad_ones(
    kafka: KafkaClient, shared_stack: Stack, tmp_path: Path
) -> None:
    scenario = Scenario.new()
    subscriber, other, sender = (
        fresh_subscriber(),
        fresh_subscriber(),
        fresh_us_sender(),
    )
    listed = tmp_path / "provider.csv"
    listed.write_text(
        "subscriber,scope,timestamp,source\n"
        f"{subscriber},number:{sender},{scenario.at(-60)},acme\n"
        "12345,campaign:spring,,\n"
        f"{other},campaign:,,\n"
        f"{other},campaign:summer-{scenario.tag},{scenario.at(-60)},\n"
    )
    report = io.StringIO()

    code = import_command(
        shared_stack.settings,
        listed,
        dry_run=False,
        strict=False,
        console=Console(file=report, width=200),
    )

    assert code == 1
    assert "3 " in report.getvalue() and "4 " in report.getvalue()
    kafka.wait_for(
        lambda: (
            len(kafka.consent_events(subscriber)) == 1
            and len(kafka.consent_events(other)) == 1
        ),
        what="the imported opt-outs",
    )
    assert kafka.consent_events(subscriber)[0]["keyword"] == "IMPORT"
    send = scenario.send(sender, subscriber, 10)
    kafka.send(send)
    assert kafka.await_decisions([send])[send["request_id"]]["status"] == "rejected"
