"""Split an incoming Arrow table into contract-exact accepted rows and rejected rows.

The checks (types, required values, enums, ids, order of times, the plausible window of every
timestamp: :data:`PLAUSIBLE_SINCE` to the landing time + :data:`PLAUSIBLE_AHEAD`) run as one
vectorised DuckDB query over the whole batch: every column is cast with
``TRY_CAST`` once, every rule is a boolean expression, and each rejected row carries a
``reject_reason`` that lists every rule it broke, joined by ``"; "``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from tracehouse.contract.schemas import (
    SPAN_ID_PATTERN,
    SUPPORTED_SCHEMA_VERSIONS,
    TIMESTAMP,
    TRACE_ID_PATTERN,
    DatasetSpec,
)
from tracehouse.contract.scratch import scratch

REJECT_REASON = "reject_reason"
_FIXED_HEX = re.compile(r"^\^\[0-9a-f\]\{(\d+)\}\$$")  # an id pattern like ^[0-9a-f]{32}$

# The plausible window of every contract timestamp (event_time, end_time, label_time and a sent
# ingest_time): from 2000-01-01 UTC to the landing time plus a week of clock skew. A row outside
# it is quarantined with the reason "<column> outside the plausible window"; it could never be a
# real LLM event, and far-future values would break the writer's day split and every mart.
PLAUSIBLE_SINCE = datetime(2000, 1, 1, tzinfo=UTC)
PLAUSIBLE_AHEAD = timedelta(days=7)


def plausible_window(ingest_time: datetime) -> tuple[datetime, datetime]:
    """(earliest, latest) timestamp a row landed at ``ingest_time`` may carry."""
    return PLAUSIBLE_SINCE, ingest_time.astimezone(UTC) + PLAUSIBLE_AHEAD

_DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "double": "DOUBLE",
    "int64": "BIGINT",
    "bool": "BOOLEAN",
    "timestamp[us, tz=UTC]": "TIMESTAMPTZ",
    "list<item: string>": "VARCHAR[]",
    "list<item: struct<artifact_id: string, kind: string, uri: string, privacy_class: string, "
    "bytes: int64, sha256: string>>": (
        "STRUCT(artifact_id VARCHAR, kind VARCHAR, uri VARCHAR, privacy_class VARCHAR, "
        "bytes BIGINT, sha256 VARCHAR)[]"
    ),
}


@dataclass
class ValidationResult:
    """The outcome of validating one batch against one dataset's contract."""

    dataset: str
    accepted: pa.Table  # exactly the contract schema
    rejected: pa.Table  # the incoming contract columns rendered as text, plus reject_reason
    dropped_columns: list[str] = field(default_factory=list)

    @property
    def received_rows(self) -> int:
        """Rows in the incoming batch: always accepted + rejected."""
        return self.accepted.num_rows + self.rejected.num_rows


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _duckdb_type(type_: pa.DataType) -> str:
    return _DUCKDB_TYPES[str(type_)]


def _cast_expr(name: str, source_type: pa.DataType | None, target: pa.DataType) -> str:
    """A DuckDB expression that yields the column in its contract type, NULL where uncastable."""
    if source_type is None:
        return f"CAST(NULL AS {_duckdb_type(target)})"
    if source_type == target:
        return _q(name)
    if pa.types.is_timestamp(target) and pa.types.is_timestamp(source_type):
        if source_type.tz is None:  # naive timestamps are taken as UTC, as OTel and Spark do
            return f"timezone('UTC', {_q(name)})"
        return f"CAST({_q(name)} AS TIMESTAMPTZ)"
    if pa.types.is_string(target) and (
        pa.types.is_list(source_type) or pa.types.is_struct(source_type)
    ):
        # An object handed over as a struct or map is still a JSON object: keep it as JSON text.
        return f"CAST(to_json({_q(name)}) AS VARCHAR)"
    return f"TRY_CAST({_q(name)} AS {_duckdb_type(target)})"


def _as_text(name: str, source_type: pa.DataType) -> str:
    """Render any incoming column as text for the quarantine, losslessly where possible."""
    if pa.types.is_nested(source_type):
        return f"CAST(to_json({_q(name)}) AS VARCHAR)"
    if pa.types.is_timestamp(source_type):
        return f"strftime({_q(name)}, '%Y-%m-%dT%H:%M:%S.%fZ')" if source_type.tz else (
            f"strftime({_q(name)}, '%Y-%m-%dT%H:%M:%S.%f')"
        )
    return f"CAST({_q(name)} AS VARCHAR)"


def _rules(
    spec: DatasetSpec, present: dict[str, pa.DataType], window: tuple[datetime, datetime]
) -> list[tuple[str, str]]:
    """(condition that marks a row bad, reason) pairs over the cast columns ``__c_<name>``."""
    rules: list[tuple[str, str]] = []
    required = set(spec.required_columns)
    for f in spec.schema:
        name, cast = f.name, f"__c_{f.name}"
        if name in required and name not in present:
            rules.append(("TRUE", f"missing required column: {name}"))
            continue
        if name not in present:
            continue
        rules.append(
            (f"{_q(name)} IS NOT NULL AND {cast} IS NULL", f"uncastable {name}: not {f.type}")
        )
        if name in required:
            rules.append((f"{_q(name)} IS NULL", f"missing required value: {name}"))
    for name, allowed in spec.enums.items():
        if name in present:
            values = ", ".join(_lit(v) for v in allowed)
            rules.append(
                (f"__c_{name} IS NOT NULL AND __c_{name} NOT IN ({values})", f"{name} not in enum")
            )
    for name in spec.unit_interval:
        if name in present:
            rules.append((f"NOT (__c_{name} BETWEEN 0 AND 1)", f"{name} outside [0, 1]"))
    if "schema_version" in present:
        versions = ", ".join(_lit(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
        rules.append(
            (f"__c_schema_version NOT IN ({versions})", "unknown schema_version")
        )
    id_rules = {
        "trace_id": TRACE_ID_PATTERN,
        "span_id": SPAN_ID_PATTERN,
        "parent_span_id": SPAN_ID_PATTERN,
    }
    for name, pattern in id_rules.items():
        if name in present and name in spec.schema.names:
            fixed = _FIXED_HEX.match(pattern)
            # All zeros is not an id. With a fixed-length pattern only one all-zero string can
            # match it: comparing with that literal is the same rule, without building a string
            # per row.
            zeros = (
                _lit("0" * int(fixed.group(1))) if fixed else f"repeat('0', length(__c_{name}))"
            )
            rules.append(
                (
                    f"NOT regexp_full_match(__c_{name}, {_lit(pattern)}) "
                    f"OR __c_{name} = {zeros}",
                    f"malformed {name}",
                )
            )
    since, until = (_lit(t.isoformat()) + "::TIMESTAMPTZ" for t in window)
    for f in spec.schema:
        if f.name in present and pa.types.is_timestamp(f.type):
            rules.append(
                (
                    f"__c_{f.name} < {since} OR __c_{f.name} > {until}",
                    f"{f.name} outside the plausible window "
                    f"[{window[0]:%Y-%m-%d}, landing + {PLAUSIBLE_AHEAD.days} days]",
                )
            )
    if {"event_time", "end_time"} <= present.keys() and "end_time" in spec.schema.names:
        rules.append(("__c_end_time < __c_event_time", "end before start"))
    if "duration_ms" in present:
        rules.append(("__c_duration_ms < 0 OR isnan(__c_duration_ms)", "negative duration"))
    if "attributes" in present:
        # Valid JSON that starts with "{" is an object: such rows (all of them, in practice)
        # are parsed once, not twice.
        rules.append(
            (
                "__c_attributes IS NOT NULL AND CASE WHEN starts_with(__c_attributes, '{') "
                "THEN NOT json_valid(__c_attributes) ELSE (NOT json_valid(__c_attributes) "
                "OR json_type(__c_attributes) <> 'OBJECT') END",
                "attributes not a JSON object",
            )
        )
    return rules


def validate_table(
    table: pa.Table,
    spec: DatasetSpec,
    *,
    ingest_time: datetime | None = None,
) -> ValidationResult:
    """Validate ``table`` against ``spec``; return the accepted and rejected rows.

    Accepted rows are cast to exactly ``spec.schema`` (column order and types), with
    ``ingest_time`` filled where absent. Rejected rows keep every incoming contract column,
    rendered as text so nothing is lost whatever its type, plus ``reject_reason``. Columns the
    contract does not know are dropped from both, and listed in ``dropped_columns``: they were
    never checked or redacted, so they must not land anywhere.
    """
    ingest_time = ingest_time or datetime.now(UTC)
    present = {f.name: f.type for f in table.schema if f.name in spec.schema.names}
    dropped = [n for n in table.schema.names if n not in spec.schema.names]

    casts = [
        f"{_cast_expr(f.name, present.get(f.name), f.type)} AS __c_{f.name}" for f in spec.schema
    ]
    rules = _rules(spec, present, plausible_window(ingest_time))
    reason = (
        "concat_ws('; ', " + ", ".join(f"CASE WHEN {c} THEN {_lit(r)} END" for c, r in rules) + ")"
        if rules
        else "''"
    )
    # The reasons are computed in one pass that materialises nothing but a (mostly null) text
    # column; rows are then split with Arrow. Columns already in their contract type are taken
    # as they are (a cast to the same type is the identity); only other batches go through
    # DuckDB's casts, and only rejected rows are rendered as text.
    with scratch(("incoming", table), also=("good", "bad")) as con:
        reasons = (
            con.sql(
                f"SELECT NULLIF({reason}, '') AS __reject_reason FROM "
                f"(SELECT *, {', '.join(casts)} FROM incoming)"
            )
            .to_arrow_table()
            .column(0)
        )
        ok = pc.is_null(reasons)
        n_rejected = len(reasons) - reasons.null_count
        good = table if n_rejected == 0 else table.filter(ok)
        fill = pa.scalar(ingest_time, TIMESTAMP)
        if all(present.get(f.name, f.type) == f.type for f in spec.schema):
            columns = []
            for f in spec.schema:
                col = good.column(f.name) if f.name in present else pa.nulls(good.num_rows, f.type)
                if f.name == "ingest_time":
                    col = pc.fill_null(col, fill)
                columns.append(col)
            accepted = pa.table(columns, names=spec.schema.names)
        else:
            con.register("good", good)
            accepted_cols = []
            for f in spec.schema:
                expr = f"__c_{f.name}"
                if f.name == "ingest_time":
                    expr = (
                        f"coalesce(__c_ingest_time, {_lit(ingest_time.isoformat())}::TIMESTAMPTZ)"
                    )
                accepted_cols.append(f"{expr} AS {_q(f.name)}")
            accepted = con.sql(
                f"SELECT {', '.join(accepted_cols)} FROM (SELECT {', '.join(casts)} FROM good)"
            ).to_arrow_table()
        bad = table.filter(pc.invert(ok)).append_column(
            "__reject_reason", reasons.filter(pc.invert(ok))
        )
        con.register("bad", bad)
        rejected_cols = [
            f"{_as_text(n, t)} AS {_q(n)}"
            for n, t in zip(table.schema.names, table.schema.types, strict=True)
            if n in present
        ]
        rejected = con.sql(
            f"SELECT {', '.join([*rejected_cols, '__reject_reason AS ' + REJECT_REASON])} "
            f"FROM bad"
        ).to_arrow_table()
    return ValidationResult(
        dataset=spec.name,
        accepted=accepted.cast(spec.schema),
        rejected=rejected,
        dropped_columns=dropped,
    )


def render_as_text(table: pa.Table) -> pa.Table:
    """Every column of ``table`` rendered as text (JSON for nested values), as the quarantine
    keeps rows whose types cannot be trusted; the column names and row order are kept."""
    if table.num_columns == 0:
        return table
    with scratch(("t", table)) as con:
        cols = [
            f"{_as_text(n, t)} AS {_q(n)}"
            for n, t in zip(table.schema.names, table.schema.types, strict=True)
        ]
        return con.sql(f"SELECT {', '.join(cols)} FROM t").to_arrow_table()
