{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace: the waterfall. For each stage (span type other than the root's):
    `<span_type>_ms`, the summed duration of its spans (NULL when the stage did not run), and
    `<span_type>_offset_ms`, when its first span started, in ms after the trace start (the
    root's start; the earliest span's while the root has not landed).
-#}
{%- set stages = contract_enum('span_type') | reject('equalto', 'request') | list -%}

{{ stamps_ref() }}
with

spans as (
    select * from {{ ref('base_lake__spans') }}
    {%- if is_incremental() %}
    where {{ touched_spans_predicate() }}
    {%- endif %}
),

per_trace as (
    select
        trace_id,
        coalesce(
            min(case when parent_span_id is null and span_type = 'request' then event_time end),
            min(event_time)
        ) as trace_started_at,
        {%- for stage in stages %}
        {{ exact_sum("case when span_type = '" ~ stage ~ "' then duration_ms end", 6) }} as {{ stage }}_ms,
        min(case when span_type = '{{ stage }}' then event_time end) as {{ stage }}_started_at,
        {%- endfor %}
        max(ingest_time) as last_span_ingest_at
    from spans
    group by trace_id
),

final as (
    select
        trace_id,
        trace_started_at,
        {%- for stage in stages %}
        {{ stage }}_ms,
        {{ duration_ms_between('trace_started_at', stage ~ '_started_at') }} as {{ stage }}_offset_ms,
        {%- endfor %}
        last_span_ingest_at
    from per_trace
)

select * from final
