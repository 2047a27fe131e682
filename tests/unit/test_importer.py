"""Validation of imported opt-out lists (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.tools.importer import InvalidImportFile, plan_import

NOW = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def plan(text: str, source: str = "list.csv"):  # type: ignore[no-untyped-def]
    return plan_import(text.encode(), source, now=NOW)


def test_good_rows_become_imports_with_normalised_fields() -> None:
    result = plan(
        "subscriber,scope,timestamp,source\n"
        "+14155550100,campaign:spring,2025-04-01T10:00:00Z,acme\n"
        "+1 415 555 0101,number:+12015550101,,\n"
    )

    assert result.errors == []
    first, second = result.rows
    assert (first.subscriber, first.scope, first.source) == (
        "+14155550100",
        "campaign:spring",
        "acme",
    )
    assert first.at == datetime(2025, 4, 1, 10, tzinfo=UTC)
    assert (second.subscriber, second.scope) == ("+14155550101", "number:+12015550101")
    assert (second.at, second.source) == (NOW, "list.csv")


def test_sender_column_means_number_scope() -> None:
    result = plan("subscriber,sender\n+14155550100,52020\n")

    assert [row.scope for row in result.rows] == ["number:52020"]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        pytest.param("not-a-number,campaign:x,", "subscriber", id="bad-subscriber"),
        pytest.param("+14155550100,campaign:,", "neither", id="empty-campaign"),
        pytest.param("+14155550100,group:x,", "neither", id="unknown-scope-kind"),
        pytest.param("+14155550100,number:abc,", "sender", id="bad-number-scope"),
        pytest.param("+14155550100,,", "neither a scope", id="no-scope"),
        pytest.param("+14155550100,campaign:x,yesterday", "RFC 3339", id="bad-time"),
        pytest.param(
            "+14155550100,campaign:x,2025-04-01T10:00:00", "time zone", id="naive-time"
        ),
        pytest.param("+14155550100,campaign:x,,extra", "more cells", id="extra-cell"),
    ],
)
def test_bad_rows_are_reported_with_their_line(row: str, problem: str) -> None:
    result = plan(f"subscriber,scope,timestamp\n+14155550100,campaign:ok,\n{row}\n")

    assert len(result.rows) == 1
    assert [error.line for error in result.errors] == [3]
    assert problem in result.errors[0].problem


def test_import_ids_are_stable_for_the_same_file_and_differ_by_line() -> None:
    text = "subscriber,scope\n+14155550100,campaign:a\n+14155550100,campaign:b\n"

    first = [row.import_id for row in plan(text).rows]
    again = [row.import_id for row in plan(text).rows]

    assert first == again
    assert len(set(first)) == 2


def test_a_file_without_the_needed_columns_is_refused() -> None:
    with pytest.raises(InvalidImportFile, match="subscriber"):
        plan("phone,campaign\n+14155550100,a\n")
