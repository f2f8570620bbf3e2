"""Phoenix span dataframes (``px.Client().get_spans_dataframe()`` saved as Parquet) to spans.

The dataframe has one row per span: ``name``, ``span_kind``, ``parent_id``, ``start_time``,
``end_time``, ``status_code``, ``status_message``, ``context.span_id``, ``context.trace_id``
and one ``attributes.<key>`` column per OpenInference attribute (``attributes.llm.model_name``,
``attributes.llm.token_count.prompt``, ``attributes.retrieval.documents``, ...). The root span
(no ``parent_id``) becomes the contract's ``request`` span; the others are typed by their span
kind, as OTLP ingest types OpenInference spans. ``input.value`` of the root lands as the masked
query preview; every other input, output, message and document text is tier-3 and withheld.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from tracehouse.history.landing import HistoryReport, land
from tracehouse.history.sql import (
    Columns,
    HistoryError,
    columns_of,
    environment_expr,
    ident,
    lit,
    preview_expr,
    register_files,
    span_id_expr,
    trace_id_expr,
)
from tracehouse.otlp.mapping import OPENINFERENCE_KINDS, MappingDefaults
from tracehouse.redaction import Redactor

PHOENIX_SOURCE = "phoenix"
A = "attributes."
# Tier-3 columns: their presence is recorded (content_withheld), their text never lands.
CONTENT_COLUMNS = (
    "attributes.input.value", "attributes.output.value", "attributes.llm.input_messages",
    "attributes.llm.output_messages", "attributes.llm.prompt_template.template",
    "attributes.llm.prompt_template.variables", "attributes.retrieval.documents",
    "attributes.reranker.input_documents", "attributes.reranker.output_documents",
    "attributes.embedding.embeddings", "attributes.tool.parameters",
)


def _docs(c: Columns, column: str, field: str) -> str:
    """A list of ``document.<field>`` values of a documents column (list of structs or JSON)."""
    if not c.has(column):
        return "NULL"
    t = c.types[column].upper()
    col = c.raw(column)
    if t.startswith("STRUCT") and t.endswith("[]"):
        return f"list_transform({col}, lambda x: CAST(x.{ident('document.' + field)} AS VARCHAR))"
    j = c.json(column)
    return (f"CAST(json_extract({j}, '$[*].\"document.{field}\"') AS VARCHAR[])")


def _spans_sql(c: Columns, d: MappingDefaults) -> str:
    kinds = ", ".join(f"{lit(k)}: {lit(v)}" for k, v in OPENINFERENCE_KINDS.items())
    meta = c.json("attributes.metadata")

    def m(key: str) -> str:
        return (f"coalesce(json_extract_string({meta}, '$.\"tracehouse.{key}\"'), "
                f"json_extract_string({meta}, '$.{key}'))")

    span_id = c.text("context.span_id", "span_id", "__index_level_0__")
    content = " OR ".join(f"{c.raw(x)} IS NOT NULL" for x in CONTENT_COLUMNS if c.has(x)) \
        or "false"
    ids = _docs(c, "attributes.retrieval.documents", "id")
    scores = (f"list_transform({_docs(c, 'attributes.retrieval.documents', 'score')}, "
              "lambda x: TRY_CAST(x AS DOUBLE))")
    input_text = c.text("attributes.input.value")
    return f"""
        WITH raw AS (
            SELECT
                {trace_id_expr(c.text("context.trace_id", "trace_id"))} AS trace_id,
                {span_id_expr(span_id)} AS span_id,
                {span_id_expr(c.text("parent_id", "parent_span_id"))} AS parent_span_id,
                {c.ts("start_time")} AS event_time,
                {c.ts("end_time")} AS end_time,
                {c.text("name")} AS name,
                upper(coalesce({c.text("attributes.openinference.span.kind")},
                    {c.text("span_kind")})) AS kind,
                upper({c.text("status_code")}) AS status_code,
                {c.text("status_message")} AS status_message,
                {c.text("attributes.llm.model_name", "attributes.embedding.model_name",
                        "attributes.reranker.model_name")} AS model_name,
                {c.text("attributes.llm.provider", "attributes.llm.system")} AS model_provider,
                TRY_CAST({c.raw("attributes.llm.token_count.prompt")} AS BIGINT)
                    AS input_tokens,
                TRY_CAST({c.raw("attributes.llm.token_count.completion")} AS BIGINT)
                    AS output_tokens,
                {c.number("attributes.llm.cost.total")} AS cost_usd_estimate,
                {c.text("attributes.tool.name")} AS tool_name,
                {c.text("attributes.llm.prompt_template.version")} AS prompt_version,
                {c.text("attributes.session.id")} AS session_id,
                {c.text("attributes.user.id")} AS user_id,
                {m("tenant_id")} AS tenant_id,
                {m("environment")} AS environment,
                {m("service_name")} AS service_name,
                {m("app_version")} AS app_version,
                {m("release_sha")} AS release_sha,
                {m("task_type")} AS task_type,
                {m("route_name")} AS route_name,
                {m("retriever_version")} AS retriever_version,
                {m("request_id")} AS request_id,
                {input_text} AS input_text,
                ({content}) AS has_content,
                {ids} AS chunk_ids,
                {scores} AS doc_scores
            FROM spans
        ),
        enveloped AS (
            SELECT
                raw.*,
                parent_span_id IS NULL AS is_root,
                -- the request envelope: the root's value, else any span's of the trace
                {", ".join(
                    f"coalesce(first_value({col}) OVER w, max({col}) OVER (PARTITION BY "
                    f"trace_id)) AS trace_{col}"
                    for col in ("tenant_id", "environment", "service_name", "app_version",
                                "release_sha", "task_type", "route_name", "retriever_version",
                                "request_id", "session_id", "user_id", "prompt_version"))}
            FROM raw
            WINDOW w AS (PARTITION BY trace_id ORDER BY parent_span_id IS NULL DESC,
                         event_time ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
        )
        SELECT
            '1' AS schema_version,
            event_time,
            end_time,
            date_diff('microsecond', event_time, end_time) / 1000.0 AS duration_ms,
            trace_id,
            span_id,
            parent_span_id,
            coalesce(trace_request_id, trace_id) AS request_id,
            trace_session_id AS conversation_id,
            trace_session_id AS session_id,
            trace_user_id AS user_id_hash,
            coalesce(trace_tenant_id, {lit(d.tenant_id)}) AS tenant_id,
            {environment_expr("trace_environment", d.environment)} AS environment,
            coalesce(trace_service_name, {lit(d.service_name)}) AS service_name,
            coalesce(trace_app_version, {lit(d.app_version)}) AS app_version,
            coalesce(trace_release_sha, {lit(d.release_sha)}) AS release_sha,
            CASE WHEN is_root THEN 'request'
                ELSE coalesce(MAP {{{kinds}}}[kind], {lit(d.span_type)}) END AS span_type,
            coalesce(name, lower(kind), 'span') AS operation_name,
            CASE WHEN status_code = 'ERROR' AND lower(status_message) SIMILAR TO
                    '.*(timeout|timed out).*' THEN 'timeout'
                WHEN status_code = 'ERROR' THEN 'error' ELSE 'ok' END AS status,
            CASE WHEN status_code = 'ERROR' THEN 'error' END AS error_type,
            CASE WHEN status_code = 'ERROR' THEN {preview_expr("status_message")} END
                AS error_message_redacted,
            trace_task_type AS task_type,
            trace_route_name AS route_name,
            model_name,
            model_provider,
            coalesce(prompt_version, CASE WHEN is_root THEN trace_prompt_version END)
                AS prompt_version,
            trace_retriever_version AS retriever_version,
            tool_name,
            input_tokens,
            output_tokens,
            cost_usd_estimate,
            list_filter([
                CASE WHEN (is_root AND input_text IS NOT NULL) OR status_code = 'ERROR'
                    THEN 'contains_user_text' ELSE 'tier1' END,
                CASE WHEN has_content THEN 'content_withheld' END,
                CASE WHEN trace_user_id IS NOT NULL THEN 'ids_hashed' END
            ], lambda x: x IS NOT NULL) AS privacy_tags,
            CAST(CASE
                WHEN is_root AND input_text IS NOT NULL
                    THEN json_object('user_query_redacted', {preview_expr("input_text")})
                WHEN NOT is_root AND MAP {{{kinds}}}[kind] = 'retrieval'
                    AND chunk_ids IS NOT NULL
                    THEN json_object('chunk_ids', chunk_ids,
                        'top_k_returned', len(chunk_ids),
                        'score_min', list_min(doc_scores), 'score_max', list_max(doc_scores),
                        'score_mean', list_avg(doc_scores))
                ELSE json_object() END AS VARCHAR) AS attributes
        FROM enveloped
    """


def ingest_phoenix(
    lake: Path | str,
    files: list[Path] | Path | str,
    redactor: Redactor,
    *,
    defaults: MappingDefaults | None = None,
    source: str = PHOENIX_SOURCE,
) -> HistoryReport:
    """Land Phoenix span-dataframe Parquet files (one batch for all of them)."""
    paths = [Path(files)] if isinstance(files, str | Path) else [Path(f) for f in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise HistoryError(f"no such file: {', '.join(missing)}")
    d = defaults or MappingDefaults()
    report = HistoryReport(source)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        register_files(con, "spans", paths)
        c = Columns(columns_of(con, "spans"))
        if not (c.has("context.trace_id") or c.has("trace_id")):
            raise HistoryError(
                "not a Phoenix span dataframe: no context.trace_id column (save "
                "px.Client().get_spans_dataframe() with .to_parquet(), index included)"
            )
        report.read["spans"] = int(con.execute(
            "SELECT count(*) FROM spans").fetchall()[0][0])
        table = con.sql(_spans_sql(c, d)).to_arrow_table()
    finally:
        con.close()
    report.reports.append(land(lake, "spans", table, redactor, source=source))
    return report
