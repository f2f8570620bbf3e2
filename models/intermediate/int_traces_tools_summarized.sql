{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace with a tool_call span: how many calls, how many failed (status not ok)
    or timed out, which tools in order of first call (`tools_called`, `tool_path`), and the
    tool versions in force (`tool_name=version`, sorted).
-#}

-- depends_on: {{ ref('base_lake__spans') }}
{{- stamps_ref() }}
with

spans as (
    select * from {{ ref('stg_lake__tool_call_spans') }}
    {%- if is_incremental() %}
    where {{ touched_spans_predicate(['tool_call']) }}
    {%- endif %}
),

per_tool as (
    select
        trace_id,
        coalesce(tool_name, 'unknown') as tool_name,
        min(event_time) as first_called_at,
        min(tool_version) as tool_version,
        count(*) as call_count,
        cast(sum(case when status <> 'ok' then 1 else 0 end) as bigint) as error_count,
        cast(sum(case when status = 'timeout' then 1 else 0 end) as bigint) as timeout_count,
        max(ingest_time) as last_span_ingest_at
    from spans
    group by trace_id, coalesce(tool_name, 'unknown')
),

per_trace as (
    select
        trace_id,
        cast(sum(call_count) as bigint) as tool_call_count,
        cast(sum(error_count) as bigint) as tool_error_count,
        cast(sum(timeout_count) as bigint) as tool_timeout_count,
        count(*) as distinct_tool_count,
        {{ list_agg_ordered('tool_name', 'first_called_at, tool_name') }} as tools_called,
        {{ list_sorted_distinct(list_agg(
            "case when tool_version is not null then tool_name || '=' || tool_version end"
        )) }} as tool_versions,
        max(last_span_ingest_at) as last_span_ingest_at
    from per_tool
    group by trace_id
),

final as (
    select
        trace_id,
        tool_call_count,
        tool_error_count,
        tool_timeout_count,
        distinct_tool_count,
        tools_called,
        {{ list_join('tools_called', '>') }} as tool_path,
        tool_versions,
        last_span_ingest_at
    from per_trace
)

select * from final
