"""Log configuration: `[time] [LEVEL] [logger] : message`, or JSON lines."""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from app.settings import Settings

TEXT_FORMAT = "[%(asctime)s] [%(levelname)s] [%(name)s] : %(message)s"


class JsonLines(logging.Formatter):
    """One JSON object per record, for log shippers that parse fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A dictConfig for the worker and the tools, from STOPGUARD_LOG_*."""
    formatter: dict[str, Any] = (
        {"()": JsonLines} if settings.log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            # Faust warns "producer buffer full" each time its buffer of
            # changelog writes passes 100 records and flushes it: many times
            # a second at full load, a normal state that needs nobody.
            "faust.transport.producer": {"level": "ERROR"},
        },
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))


def drop_spinner(worker: Any) -> None:
    """Switch off the terminal spinner of a `faust.Worker`.

    At log levels WARNING and above Faust keeps its spinner and lowers the
    root logger to DEBUG so that the spinner turns on every record: every
    debug call of Faust and aiokafka then builds a log record, a cost paid
    per message. A worker logs to a file or a collector, not a terminal.
    """
    worker.spinner = None
