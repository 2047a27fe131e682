"""The `stopguard` command."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console
from rich.table import Table

from app.errors import StopguardError
from app.settings import Settings

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
    logging.basicConfig(
        level=settings.log_level,
        format="[%(asctime)s] [%(levelname)s] [%(name)s] : %(message)s",
    )
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


def main() -> None:
    try:
        cli()
    except StopguardError as exc:
        errors.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
