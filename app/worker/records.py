"""Reading input records: bytes in, a validated model or a dead letter out."""

from __future__ import annotations

import base64
from typing import Literal, TypeVar

from pydantic import BaseModel, ValidationError

from app.errors import InvalidRecord
from app.models import DeadLetter

Model = TypeVar("Model", bound=BaseModel)


def parse(model: type[Model], raw: bytes | None) -> Model:
    """Validate one record's value, or raise InvalidRecord saying what is wrong."""
    if raw is None:
        raise InvalidRecord(
            f"the value is empty (a tombstone) where a {model.__name__} was expected"
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRecord(describe(model, exc)) from exc


def describe(model: type[BaseModel], exc: ValidationError) -> str:
    """A dead-letter error a person can act on, naming every bad field."""
    errors = exc.errors(include_url=False, include_input=False)
    if errors and errors[0]["type"] == "json_invalid":
        return (
            f"the value is not valid JSON ({errors[0]['msg']}); producers must "
            f"write a UTF-8 JSON object for a {model.__name__}"
        )
    problems = "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'value'}: {e['msg']}"
        for e in errors[:10]
    )
    return f"not a valid {model.__name__}: {problems}; fix the producer and resend"


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: str,
) -> DeadLetter:
    """The dead-letter record for an input record, keeping its original bytes."""
    raw, encoding = _as_text(value or b"")
    return DeadLetter(
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "backslashreplace") if key is not None else None,
        error=error,
        raw=raw,
        raw_encoding=encoding,
    )


def _as_text(value: bytes) -> tuple[str, Literal["text", "base64"]]:
    try:
        return value.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"
