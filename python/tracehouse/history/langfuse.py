"""Langfuse blob-storage exports to contract spans, annotations and feedback.

The export folder holds the tables the Langfuse blob storage integration writes, as Parquet or
JSON lines (gzip or not): ``traces/`` and ``observations/`` (the legacy export),
``observations_v2/`` (enriched observations, with the trace's fields on every row), and
``scores/``. Each Langfuse trace becomes a root ``request`` span (its id derived from the
trace id) and each observation a child span; scores become one annotation per trace (the
contract's score columns) and thumbs feedback. Ids that are not W3C ids are mapped
deterministically (UUIDs lose their dashes, anything else is hashed), so importing the same
export twice lands the same ids and the warehouse keeps one row each.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb

from tracehouse.history.landing import HistoryReport, land
from tracehouse.history.sql import (
    Columns,
    HistoryError,
    columns_of,
    environment_expr,
    files_in,
    ident,
    lit,
    preview_expr,
    register_files,
    span_id_expr,
    trace_id_expr,
)
from tracehouse.otlp.mapping import MappingDefaults
from tracehouse.redaction import Redactor

LANGFUSE_SOURCE = "langfuse"
TABLES = ("traces", "observations", "observations_v2", "scores")

# Observation type -> span_type (other types: the defaults' span_type).
OBSERVATION_TYPES: Mapping[str, str] = {
    "GENERATION": "llm",
    "EMBEDDING": "embedding",
    "RETRIEVER": "retrieval",
    "TOOL": "tool_call",
    "GUARDRAIL": "postprocess",
    "EVALUATOR": "postprocess",
}
# Score name -> annotation column, or "feedback" for thumbs (value >= 0.5 is thumbs_up).
DEFAULT_SCORE_MAP: Mapping[str, str] = {
    "correctness": "correctness",
    "groundedness": "groundedness",
    "citation_quality": "citation_quality",
    "completeness": "completeness",
    "tool_use_correct": "tool_use_correct",
    "policy_compliant": "policy_compliant",
    "failure_category": "failure_category",
    "user-feedback": "feedback",
    "user_feedback": "feedback",
    "feedback": "feedback",
    "thumbs": "feedback",
}
NUMERIC_TARGETS = ("correctness", "groundedness", "citation_quality", "completeness")
BOOL_TARGETS = ("tool_use_correct", "policy_compliant")


def _meta(expr: str, key: str) -> str:
    """A metadata key, plain or ``tracehouse.``-prefixed."""
    return (f"coalesce(json_extract_string({expr}, '$.\"tracehouse.{key}\"'), "
            f"json_extract_string({expr}, '$.{key}'))")


def _query_text(j: str) -> str:
    """The user's query from a trace input: a JSON string, or its query/question/input key."""
    return (f"CASE WHEN json_type({j}) = 'VARCHAR' THEN {j} ->> '$' ELSE coalesce("
            f"{j} ->> '$.query', {j} ->> '$.question', {j} ->> '$.input', "
            f"{j} ->> '$.message') END")


def _normalize(con: duckdb.DuckDBPyConnection, present: set[str]) -> None:
    """Temp tables ``lf_obs`` and ``lf_traces`` in one shape, whichever tables were exported."""
    obs_table = "observations" if "observations" in present else (
        "observations_v2" if "observations_v2" in present else None)
    if obs_table is not None:
        c = Columns(columns_of(con, obs_table))
        usage, cost = c.json("usage_details"), c.json("cost_details")
        con.execute(f"""
            CREATE TEMP TABLE lf_obs AS SELECT
                {c.text("id")} AS id,
                {c.text("trace_id")} AS trace_id,
                {c.text("parent_observation_id")} AS parent_id,
                upper({c.text("type")}) AS type,
                {c.text("name")} AS name,
                {c.ts("start_time")} AS start_time,
                coalesce({c.ts("end_time")}, {c.ts("start_time")}) AS end_time,
                upper({c.text("level")}) AS level,
                {c.text("status_message")} AS status_message,
                {c.text("provided_model_name", "model", "internal_model_id")} AS model,
                CASE WHEN {c.text("prompt_name")} IS NOT NULL THEN {c.text("prompt_name")}
                    || coalesce('@' || {c.text("prompt_version")}, '') END AS prompt_version,
                TRY_CAST(coalesce({usage} ->> '$.input', {usage} ->> '$.prompt_tokens',
                    {usage} ->> '$.promptTokens') AS BIGINT) AS input_tokens,
                TRY_CAST(coalesce({usage} ->> '$.output', {usage} ->> '$.completion_tokens',
                    {usage} ->> '$.completionTokens') AS BIGINT) AS output_tokens,
                coalesce({c.number("total_cost")}, TRY_CAST({cost} ->> '$.total' AS DOUBLE))
                    AS cost,
                ({c.raw("input")} IS NOT NULL OR {c.raw("output")} IS NOT NULL) AS has_content,
                {c.json("metadata")} AS metadata,
                {c.text("trace_name")} AS trace_name,
                {c.text("user_id")} AS user_id,
                {c.text("session_id")} AS session_id,
                {c.text("release")} AS release,
                {c.text("environment")} AS environment
            FROM {ident(obs_table)}
        """)
    else:
        con.execute("""CREATE TEMP TABLE lf_obs AS SELECT NULL::VARCHAR AS id,
            NULL::VARCHAR AS trace_id, NULL::VARCHAR AS parent_id, NULL::VARCHAR AS type,
            NULL::VARCHAR AS name, NULL::TIMESTAMPTZ AS start_time,
            NULL::TIMESTAMPTZ AS end_time, NULL::VARCHAR AS level,
            NULL::VARCHAR AS status_message, NULL::VARCHAR AS model,
            NULL::VARCHAR AS prompt_version, NULL::BIGINT AS input_tokens,
            NULL::BIGINT AS output_tokens, NULL::DOUBLE AS cost, false AS has_content,
            NULL::JSON AS metadata, NULL::VARCHAR AS trace_name, NULL::VARCHAR AS user_id,
            NULL::VARCHAR AS session_id, NULL::VARCHAR AS release,
            NULL::VARCHAR AS environment WHERE false""")
    # One row per trace: the legacy traces table where exported, else the trace fields that
    # enriched observations carry; the observations' time span either way.
    from_obs = """
        SELECT trace_id AS id, min(start_time) AS first_start, max(end_time) AS last_end,
            any_value(trace_name) AS name, any_value(user_id) AS user_id,
            any_value(session_id) AS session_id, any_value(release) AS release,
            any_value(environment) AS environment,
            arg_min(prompt_version, start_time) FILTER (WHERE prompt_version IS NOT NULL)
                AS prompt_version,
            bool_or(level = 'ERROR') AS has_error,
            arg_min(status_message, start_time) FILTER (WHERE level = 'ERROR') AS error_message
        FROM lf_obs WHERE trace_id IS NOT NULL GROUP BY trace_id
    """
    if "traces" in present:
        t = Columns(columns_of(con, "traces"), alias="t")
        tin = t.json("input")
        con.execute(f"""
            CREATE TEMP TABLE lf_traces AS
            WITH o AS ({from_obs})
            SELECT
                coalesce({t.text("id")}, o.id) AS id,
                coalesce({t.ts("timestamp")}, o.first_start) AS timestamp,
                o.last_end,
                coalesce({t.text("name")}, o.name) AS name,
                coalesce({t.text("user_id")}, o.user_id) AS user_id,
                coalesce({t.text("session_id")}, o.session_id) AS session_id,
                coalesce({t.text("release")}, o.release) AS release,
                {t.text("version")} AS version,
                coalesce({t.text("environment")}, o.environment) AS environment,
                {t.json("metadata")} AS metadata,
                coalesce({_query_text(tin)},
                    CASE WHEN {tin} IS NULL THEN {t.text("input")} END) AS query,
                ({t.raw("input")} IS NOT NULL OR {t.raw("output")} IS NOT NULL) AS has_content,
                o.prompt_version,
                coalesce(o.has_error, false) AS has_error,
                o.error_message
            FROM traces AS t
            FULL OUTER JOIN o ON {t.text("id")} = o.id
        """)
    else:
        con.execute(f"""
            CREATE TEMP TABLE lf_traces AS
            WITH o AS ({from_obs})
            SELECT id, first_start AS timestamp, last_end, name, user_id, session_id, release,
                NULL::VARCHAR AS version, environment, NULL::JSON AS metadata,
                NULL::VARCHAR AS query, false AS has_content, prompt_version,
                coalesce(has_error, false) AS has_error, error_message
            FROM o
        """)


def _spans_sql(d: MappingDefaults) -> str:
    types = ", ".join(f"{lit(k)}: {lit(v)}" for k, v in OBSERVATION_TYPES.items())
    envelope = f"""
        {trace_id_expr("t.id")} AS trace_id,
        t.id AS request_id,
        t.session_id AS conversation_id,
        t.session_id AS session_id,
        t.user_id AS user_id_hash,
        coalesce({_meta("t.metadata", "tenant_id")}, {lit(d.tenant_id)}) AS tenant_id,
        {environment_expr("t.environment", d.environment)} AS environment,
        coalesce({_meta("t.metadata", "service_name")}, {lit(d.service_name)}) AS service_name,
        coalesce(t.version, {lit(d.app_version)}) AS app_version,
        coalesce(t.release, {lit(d.release_sha)}) AS release_sha,
        {_meta("t.metadata", "task_type")} AS task_type,
        {_meta("t.metadata", "route_name")} AS route_name,
        {_meta("t.metadata", "retriever_version")} AS retriever_version,
        t.prompt_version AS trace_prompt_version
    """
    root_id = "substr(md5('langfuse-root|' || t.id), 1, 16)"
    return f"""
        WITH roots AS (
            SELECT
                '1' AS schema_version,
                t.timestamp AS event_time,
                greatest(t.timestamp, coalesce(t.last_end, t.timestamp)) AS end_time,
                {envelope},
                {root_id} AS span_id,
                NULL::VARCHAR AS parent_span_id,
                'request' AS span_type,
                coalesce(t.name, 'request') AS operation_name,
                CASE WHEN t.has_error THEN 'error' ELSE 'ok' END AS status,
                CASE WHEN t.has_error THEN 'error' END AS error_type,
                {preview_expr("t.error_message")} AS error_message_redacted,
                NULL::VARCHAR AS model_name,
                NULL::VARCHAR AS tool_name,
                NULL::BIGINT AS input_tokens,
                NULL::BIGINT AS output_tokens,
                NULL::DOUBLE AS cost_usd_estimate,
                CAST(CASE WHEN t.query IS NULL THEN '{{}}' ELSE json_object(
                    'user_query_redacted', {preview_expr("t.query")}) END AS VARCHAR)
                    AS attributes,
                t.query IS NOT NULL AS has_text,
                t.has_content
            FROM lf_traces AS t
        ),
        children AS (
            SELECT
                '1' AS schema_version,
                o.start_time AS event_time,
                o.end_time,
                {envelope},
                {span_id_expr("o.id")} AS span_id,
                CASE WHEN o.parent_id IS NULL THEN {root_id}
                    ELSE {span_id_expr("o.parent_id")} END AS parent_span_id,
                coalesce(MAP {{{types}}}[o.type], {lit(d.span_type)}) AS span_type,
                coalesce(o.name, lower(o.type), 'observation') AS operation_name,
                CASE WHEN o.level <> 'ERROR' OR o.level IS NULL THEN 'ok'
                    WHEN lower(o.status_message) SIMILAR TO '.*(timeout|timed out).*'
                        THEN 'timeout'
                    ELSE 'error' END AS status,
                CASE WHEN o.level = 'ERROR' THEN 'error' END AS error_type,
                CASE WHEN o.level = 'ERROR' THEN {preview_expr("o.status_message")} END
                    AS error_message_redacted,
                o.model AS model_name,
                CASE WHEN o.type = 'TOOL' THEN o.name END AS tool_name,
                o.input_tokens,
                o.output_tokens,
                o.cost AS cost_usd_estimate,
                '{{}}' AS attributes,
                false AS has_text,
                o.has_content
            FROM lf_obs AS o
            LEFT JOIN lf_traces AS t ON o.trace_id = t.id
        ),
        unioned AS (
            SELECT * FROM roots UNION ALL BY NAME SELECT * FROM children
        )
        SELECT
            schema_version, event_time, end_time,
            date_diff('microsecond', event_time, end_time) / 1000.0 AS duration_ms,
            trace_id, span_id, parent_span_id, request_id, conversation_id, session_id,
            user_id_hash, tenant_id, environment, service_name, app_version, release_sha,
            span_type, operation_name, status, error_type, error_message_redacted, task_type,
            route_name, model_name,
            CASE WHEN span_type = 'llm' OR parent_span_id IS NULL
                THEN trace_prompt_version END AS prompt_version,
            retriever_version, tool_name, input_tokens, output_tokens, cost_usd_estimate,
            list_filter([
                CASE WHEN has_text OR error_message_redacted IS NOT NULL
                    THEN 'contains_user_text' ELSE 'tier1' END,
                CASE WHEN has_content THEN 'content_withheld' END,
                CASE WHEN user_id_hash IS NOT NULL THEN 'ids_hashed' END
            ], lambda x: x IS NOT NULL) AS privacy_tags,
            attributes
        FROM unioned
    """


def _score_tables(con: duckdb.DuckDBPyConnection, score_map: Mapping[str, str],
                  d: MappingDefaults) -> dict[str, int]:
    """Temp tables ``lf_annotations`` and ``lf_feedback``; returns unmapped score names."""
    s = Columns(columns_of(con, "scores"), alias="s")
    pairs = ", ".join(f"{lit(k)}: {lit(v)}" for k, v in score_map.items())
    con.execute(f"""
        CREATE TEMP TABLE lf_scores AS SELECT
            {s.text("id")} AS id,
            {s.text("trace_id")} AS trace_id,
            {s.text("name")} AS name,
            MAP {{{pairs}}}[{s.text("name")}] AS target,
            coalesce({s.number("value")}, CASE lower({s.text("string_value")})
                WHEN 'true' THEN 1.0 WHEN 'false' THEN 0.0 END) AS value,
            {s.text("string_value")} AS string_value,
            {s.ts("timestamp")} AS ts,
            {s.text("comment")} AS comment,
            {s.text("author_user_id")} AS author
        FROM scores AS s
    """)
    con.execute(f"""
        CREATE TEMP TABLE lf_annotations AS
        SELECT
            '1' AS schema_version,
            'lf-' || md5(s.trace_id || '|' || string_agg(s.id, ',' ORDER BY s.id))
                AS annotation_id,
            max(s.ts) AS label_time,
            {trace_id_expr("s.trace_id")} AS trace_id,
            arg_max(s.author, s.ts) AS annotator_id_hash,
            'label' AS annotation_kind,
            {", ".join(f"arg_max(s.value, s.ts) FILTER (WHERE s.target = {lit(c)}) AS {c}"
                       for c in NUMERIC_TARGETS)},
            {", ".join(f"arg_max(s.value, s.ts) FILTER (WHERE s.target = {lit(c)}) >= 0.5 "
                       f"AS {c}" for c in BOOL_TARGETS)},
            arg_max(coalesce(s.string_value, CAST(s.value AS VARCHAR)), s.ts)
                FILTER (WHERE s.target = 'failure_category') AS failure_category,
            string_agg(s.comment, ' | ' ORDER BY s.ts) AS note_redacted
        FROM lf_scores AS s
        WHERE s.target IS NOT NULL AND s.target <> 'feedback'
        GROUP BY s.trace_id
    """)
    con.execute(f"""
        CREATE TEMP TABLE lf_feedback AS
        SELECT
            '1' AS schema_version,
            'lf-' || s.id AS feedback_id,
            s.ts AS event_time,
            {trace_id_expr("s.trace_id")} AS trace_id,
            t.id AS request_id,
            t.session_id AS conversation_id,
            coalesce({_meta("t.metadata", "tenant_id")}, {lit(d.tenant_id)}) AS tenant_id,
            t.user_id AS user_id_hash,
            CASE WHEN s.value >= 0.5 THEN 'thumbs_up' WHEN s.value < 0.5 THEN 'thumbs_down'
                END AS feedback_type,
            s.value,
            {preview_expr("s.comment")} AS comment_redacted,
            'api' AS source
        FROM lf_scores AS s
        LEFT JOIN lf_traces AS t ON s.trace_id = t.id
        WHERE s.target = 'feedback'
    """)
    rows = con.execute(
        "SELECT coalesce(name, '(no name)'), count(*) FROM lf_scores WHERE target IS NULL "
        "GROUP BY ALL ORDER BY 1"
    ).fetchall()
    return {f"score name not mapped: {name}": int(n) for name, n in rows}


def ingest_langfuse(
    lake: Path | str,
    folder: Path | str,
    redactor: Redactor,
    *,
    defaults: MappingDefaults | None = None,
    score_map: Mapping[str, str] | None = None,
    source: str = LANGFUSE_SOURCE,
) -> HistoryReport:
    """Land a Langfuse blob-storage export folder: spans, then annotations and feedback.

    ``score_map`` adds or overrides score name -> target (an annotation column, or
    ``feedback``); scores whose name maps to nothing are counted in ``not_landed``.
    """
    folder = Path(folder)
    d = defaults or MappingDefaults()
    mapping = {**DEFAULT_SCORE_MAP, **(score_map or {})}
    report = HistoryReport(source)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        present = set()
        for table in TABLES:
            if register_files(con, table, files_in(folder / table)):
                present.add(table)
                report.read[table] = int(con.execute(
                    f"SELECT count(*) FROM {ident(table)}").fetchall()[0][0])
        if not present & {"traces", "observations", "observations_v2", "scores"}:
            raise HistoryError(
                f"{folder} holds no Langfuse export: expected traces/, observations/, "
                "observations_v2/ or scores/ with .parquet or .jsonl files"
            )
        if "observations" in present and "observations_v2" in present:
            report.not_landed["observations_v2 skipped: observations/ holds the same rows"] = \
                report.read["observations_v2"]
        _normalize(con, present)
        spans = con.sql(_spans_sql(d)).to_arrow_table()
        if spans.num_rows:
            report.reports.append(land(lake, "spans", spans, redactor, source=source))
        if "scores" in present:
            report.not_landed.update(_score_tables(con, mapping, d))
            for dataset, table in (("annotations", "lf_annotations"),
                                   ("feedback", "lf_feedback")):
                rows = con.sql(f"SELECT * FROM {table}").to_arrow_table()
                if rows.num_rows:
                    report.reports.append(land(lake, dataset, rows, redactor, source=source))
    finally:
        con.close()
    return report
