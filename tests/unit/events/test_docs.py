"""docs/events.md describes the contract in contract.py: no field, type or reason may go undocumented."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from reelhouse.events import contract

DOC = (Path(__file__).resolve().parents[3] / "docs" / "events.md").read_text()


def section(title: str) -> str:
    """The text from a heading to the next heading of the same or a higher level."""
    level = title.split(" ", 1)[0]
    start = DOC.index(f"\n{title}\n")
    ends = [DOC.find(f"\n{'#' * n} ", start + 1) for n in range(1, len(level) + 1)]
    ends = [e for e in ends if e != -1]
    return DOC[start : min(ends) if ends else len(DOC)]


def table_rows(text: str, first_cell: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


@pytest.mark.parametrize("name", [spec.name for spec in contract.COMMON_FIELDS])
def test_every_common_field_has_a_required_row(name):
    rows = table_rows(section("## Fields common to every event"), f"`{name}`")
    assert len(rows) == 1, f"docs/events.md lacks a row for common field {name!r}"
    assert "| required |" in rows[0]


@pytest.mark.parametrize("name", [spec.name for spec in contract.DEVICE_FIELDS])
def test_every_device_field_has_a_row(name):
    assert len(table_rows(section("## Fields common to every event"), f"`device.{name}`")) == 1


@pytest.mark.parametrize(
    ("event_type", "name", "required"),
    [
        (event_type, spec.name, required)
        for event_type, (required_specs, optional_specs) in contract.TYPE_FIELDS.items()
        for specs, required in ((required_specs, "required"), (optional_specs, "optional"))
        for spec in specs
    ],
)
def test_every_type_field_has_a_row_saying_whether_it_is_required(event_type, name, required):
    rows = table_rows(section("## Fields per event type"), f"`{event_type}` | `{name}`")
    assert len(rows) == 1, f"docs/events.md lacks a row for {event_type}.{name}"
    assert f"| {required} |" in rows[0]


def test_every_event_type_is_listed_with_its_fields():
    text = section("## Fields per event type")
    for event_type, (required, optional) in contract.TYPE_FIELDS.items():
        assert f"`{event_type}`" in text, event_type
        if not required and not optional:
            # Types without fields of their own share one "none" row.
            assert any(f"`{event_type}`" in row and "| none |" in row for row in text.splitlines()), event_type


def test_every_allowed_value_of_a_closed_set_is_documented():
    text = section("## Fields common to every event")
    for value in (*contract.EVENT_TYPES, *contract.DEVICE_OS, *contract.NETWORKS):
        assert f"`{value}`" in text, value


@pytest.mark.parametrize("reason", contract.REASONS)
def test_every_quarantine_reason_has_a_row(reason):
    assert len(table_rows(section("## Quarantine reasons"), f"`{reason}`")) == 1


def test_the_documented_reasons_are_exactly_the_contracts():
    rows = [line for line in section("## Quarantine reasons").splitlines() if line.startswith("| `")]
    assert sorted(row.split("`")[1] for row in rows) == sorted(contract.REASONS)


@pytest.mark.parametrize(
    ("title", "schema", "partition_by"),
    [
        ("### `bronze_events`", contract.BRONZE_SCHEMA, contract.BRONZE_PARTITION_BY),
        ("### `quarantine_events`", contract.QUARANTINE_SCHEMA, contract.QUARANTINE_PARTITION_BY),
    ],
)
def test_lake_tables_document_every_column_its_nullability_and_partitioning(title, schema: pa.Schema, partition_by):
    text = section(title)
    documented = [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert documented == schema.names  # same columns, same order
    for field in schema:
        (row,) = table_rows(text, f"`{field.name}`")
        assert ("| yes |" if field.nullable else "| no |") in row, field.name
    for column in partition_by:
        assert f"partitioned by `{column}`" in text
