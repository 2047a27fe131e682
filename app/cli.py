"""The `stopguard` command."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.errors import StopguardError
from app.logs import configure_logging
from app.settings import Settings
from app.tools.bench import Phase

cli = typer.Typer(
    help="SMS opt-out enforcement on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
topics_cli = typer.Typer(help="Manage stopguard's topics.", no_args_is_help=True)
cli.add_typer(topics_cli, name="topics")
console = Console()
errors = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    configure_logging(settings)
    return settings


@cli.command()
def run() -> None:
    """Start a worker (and the embedded broker if no broker is configured)."""
    from app.tools.runner import run_worker

    run_worker(_settings())


@topics_cli.command("apply")
def topics_apply() -> None:
    """Create or update the topics defined in topics/topics.yaml."""
    from app.tools.admin import apply_topics
    from app.tools.clients import tool_settings
    from app.topics import load_catalog

    settings = tool_settings(_settings())
    table = Table("topic", "outcome", "detail")
    for change in apply_topics(settings, load_catalog(settings)):
        table.add_row(change.topic, change.outcome, change.detail)
    console.print(table)


@cli.command()
def demo(
    timeout: float = typer.Option(90.0, help="Seconds to wait for decisions."),
) -> None:
    """Play a short scenario against a running worker and print the decisions."""
    from app.tools.demo import run_demo

    run_demo(_settings(), console, timeout)


@cli.command()
def audit(
    report: str = typer.Option("audit-report.jsonl", help="JSON-lines findings."),
    since: str | None = typer.Option(None, help="RFC 3339; requests from then."),
    until: str | None = typer.Option(None, help="RFC 3339; requests until then."),
    subscriber: str | None = typer.Option(None, help="Audit one subscriber."),
) -> None:
    """Replay the recorded topics and check every decision (1: discrepancies)."""
    from pathlib import Path

    from app.tools.audit import AuditFilter, audit_command, parse_moment
    from app.tools.clients import tool_settings
    from app.tools.status import canonical_subscriber

    audit_filter = AuditFilter(
        since=parse_moment(since, "--since"),
        until=parse_moment(until, "--until"),
        subscriber=canonical_subscriber(subscriber) if subscriber else None,
    )
    settings = tool_settings(_settings())
    raise typer.Exit(audit_command(settings, audit_filter, Path(report), console))


@cli.command()
def status(
    subscriber: str = typer.Argument(..., help="The subscriber's E.164 number."),
    url: str | None = typer.Option(None, help="A worker's HTTP API."),
    from_topics: bool = typer.Option(False, help="Rebuild from sms.optout.events."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A subscriber's consent in every scope and its history."""
    from app.tools.clients import tool_settings
    from app.tools.status import status_command

    settings = tool_settings(_settings())
    status_command(
        settings,
        subscriber,
        url=url,
        from_topics=from_topics,
        as_json=as_json,
        console=console,
    )


@cli.command("import")
def import_list(
    file: str = typer.Argument(..., help="CSV: subscriber, scope or sender, ..."),
    dry_run: bool = typer.Option(False, help="Validate only; produce nothing."),
    strict: bool = typer.Option(False, help="Produce nothing if any row is bad."),
) -> None:
    """Import an opt-out list (exit 1 if any row is bad)."""
    from pathlib import Path

    from app.tools.clients import tool_settings
    from app.tools.importer import import_command

    settings = tool_settings(_settings())
    code = import_command(
        settings, Path(file), dry_run=dry_run, strict=strict, console=errors
    )
    raise typer.Exit(code)


@cli.command()
def export(
    output: str | None = typer.Option(None, help="CSV file; standard output if unset."),
) -> None:
    """The opt-outs in force as CSV, rebuilt from sms.optout.events."""
    from pathlib import Path

    from app.tools.clients import tool_settings
    from app.tools.consent_log import export_command

    settings = tool_settings(_settings())
    export_command(settings, Path(output) if output else None, console)


@cli.command()
def bench(
    quick: bool = typer.Option(False, help="Smaller sizes, one worker phase."),
    requests: int | None = typer.Option(None, help="Sends in the backlog."),
    subscribers: int = typer.Option(50_000, help="Distinct subscribers."),
    optouts: int | None = typer.Option(None, help="Opt-outs in the recovery."),
    rate: int = typer.Option(2_000, help="Offered sends/s in the latency phase."),
    profile: str | None = typer.Option(None, help="py-spy output (raw stacks)."),
    phase: Annotated[
        list[Phase] | None,
        typer.Option(help="Run only this phase (repeat for more); default: all."),
    ] = None,
) -> None:
    """Measure throughput, latency, memory and replay speed (BENCHMARKS.md)."""
    from pathlib import Path

    from app.tools.bench import BenchOptions, bench_command

    sizes: dict[str, Any] = {"requests": requests, "optouts": optouts}
    if phase:
        sizes["phases"] = tuple(phase)
    chosen = {k: v for k, v in sizes.items() if v is not None}
    options = (BenchOptions.quick if quick else BenchOptions)(
        **chosen,
        subscribers=subscribers,
        latency_rate=rate,
        profile=Path(profile) if profile else None,
    )
    raise typer.Exit(bench_command(_settings(), options, console))


def main() -> None:
    try:
        cli()
    except StopguardError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
