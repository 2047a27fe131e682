"""`stopguard import`: opt-out lists from another provider, as CSV.

Each good row becomes a `ConsentImport` on `sms.optout.imports`, keyed by
the subscriber. Its `import_id` is derived from the file's bytes and the
row's line, so importing the same file twice yields the same ids and the
worker, which skips an id already in the subscriber's history, records
each opt-out once.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from app.errors import StopguardError
from app.models import ConsentImport
from app.rules.numbers import sender_number, subscriber_number
from app.settings import Settings
from app.tools.clients import producer
from app.topics import load_catalog

MAX_SOURCE_LENGTH = 256


class InvalidImportFile(StopguardError):
    """The file cannot be read as an opt-out list at all."""


@dataclass(frozen=True)
class RowError:
    line: int
    problem: str


@dataclass(frozen=True)
class ImportPlan:
    """The rows of a file, split into records to produce and rows to fix."""

    rows: list[ConsentImport]
    errors: list[RowError]


def plan_import(content: bytes, source: str, now: datetime | None = None) -> ImportPlan:
    """Validate every row of a CSV opt-out list."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidImportFile(f"the file is not UTF-8 text: {exc}") from exc
    table = csv.DictReader(io.StringIO(text))
    _check_header(table.fieldnames)
    moment = now or datetime.now(UTC)
    rows, errors = [], []
    for values in table:
        line = table.line_num
        try:
            rows.append(_row(values, f"import-{digest}-{line}", source, moment))
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
    return ImportPlan(rows, errors)


def _check_header(fields: Iterable[str] | None) -> None:
    names = set(fields or ())
    if "subscriber" not in names or not names & {"scope", "sender"}:
        raise InvalidImportFile(
            f"the header must name a `subscriber` column and a `scope` or `sender` "
            f"column; found {sorted(names)}"
        )


def _row(
    values: dict[str, str | None], import_id: str, source: str, now: datetime
) -> ConsentImport:
    cell = {k: (v or "").strip() for k, v in values.items() if k is not None}
    if None in values:
        raise ValueError("the row has more cells than the header has columns")
    raw = cell.get("subscriber", "")
    subscriber = subscriber_number(raw)
    if subscriber is None:
        raise ValueError(f"subscriber {raw!r} is not an E.164 number")
    row_source = cell.get("source") or source
    if len(row_source) > MAX_SOURCE_LENGTH:
        raise ValueError(f"source is longer than {MAX_SOURCE_LENGTH} characters")
    return ConsentImport(
        import_id=import_id,
        subscriber=subscriber,
        scope=_scope(cell.get("scope", ""), cell.get("sender", "")),
        at=_timestamp(cell.get("timestamp", ""), now),
        source=row_source,
    )


def _scope(scope: str, sender: str) -> str:
    if scope and sender:
        raise ValueError("give a scope or a sender, not both")
    if sender:
        return f"number:{_sender(sender)}"
    kind, _, value = scope.partition(":")
    if kind == "campaign" and value.strip():
        return f"campaign:{value.strip()}"
    if kind == "number" and value:
        return f"number:{_sender(value)}"
    raise ValueError(
        f"scope {scope!r} is neither campaign:<id> nor number:<sender>"
        if scope
        else "the row has neither a scope nor a sender"
    )


def _sender(raw: str) -> str:
    number = sender_number(raw)
    if number is None:
        raise ValueError(f"sender {raw!r} is neither an E.164 number nor a short code")
    return number


def _timestamp(raw: str, now: datetime) -> datetime:
    if not raw:
        return now
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"timestamp {raw!r} is not RFC 3339") from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {raw!r} has no time zone offset (add Z)")
    return moment.astimezone(UTC)


def read_plan(path: Path) -> ImportPlan:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise InvalidImportFile(f"cannot read {path}: {exc}") from exc
    return plan_import(content, source=path.name)


def produce_rows(settings: Settings, rows: Iterable[ConsentImport]) -> int:
    """Produce the rows to the imports topic; how many were delivered."""
    topic = load_catalog(settings).imports
    client = producer(settings)
    count = 0
    for row in rows:
        client.produce(topic, key=row.subscriber.encode(), value=row.to_json())
        client.poll(0)
        count += 1
    undelivered = client.flush(30)
    if undelivered:
        raise StopguardError(
            f"{undelivered} import records were not delivered to {topic}; the "
            "import is idempotent, run it again"
        )
    return count


def import_command(
    settings: Settings, path: Path, *, dry_run: bool, strict: bool, console: Console
) -> int:
    """Validate, report bad rows, produce good ones; 1 if any row was bad."""
    plan = read_plan(path)
    if plan.errors:
        table = Table("line", "problem", title=f"rows not imported from {path.name}")
        for error in plan.errors:
            table.add_row(str(error.line), error.problem)
        console.print(table)
    if dry_run or (strict and plan.errors):
        reason = "dry run" if dry_run else "--strict and bad rows"
        console.print(f"{len(plan.rows)} good rows, nothing produced ({reason})")
    else:
        produced = produce_rows(settings, plan.rows)
        topic = load_catalog(settings).imports
        console.print(f"{produced} opt-outs produced to {topic}")
    return 1 if plan.errors else 0
