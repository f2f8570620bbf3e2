{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace: the request envelope. The root span (parent_span_id null, span_type
    request) is authoritative; a column falls back to the trace's other spans (their smallest
    value, so the choice is deterministic) only where the root has NULL, and a trace whose root
    has not landed yet takes its times from its earliest span. Also the trace's cost (every
    span) and its lineage `last_span_ingest_at`. Incremental on traces with newly landed spans.
    Reads base_lake__spans (envelope of every span), stg_lake__request_spans (the root's
    attributes: final_status, entrypoint, locale) and int_spans_priced (cost).
-#}
{%- set fallback_columns = [
    'request_id', 'conversation_id', 'session_id', 'user_id_hash', 'tenant_id', 'environment',
    'service_name', 'app_version', 'release_sha', 'task_type', 'route_name', 'prompt_version',
    'retriever_version', 'cache_status',
] -%}

{{ stamps_ref() }}
with

spans as (
    select * from {{ ref('base_lake__spans') }}
    {%- if is_incremental() %}
    where {{ touched_spans_predicate() }}
    {%- endif %}
),

request_spans as (
    select * from {{ ref('stg_lake__request_spans') }}
    {%- if is_incremental() %}
    where {{ touched_spans_predicate() }}
    {%- endif %}
),

priced_spans as (
    select * from {{ ref('int_spans_priced') }}
    {%- if is_incremental() %}
    where trace_id in ({{ traces_touched_by_spans(ref('base_lake__spans')) }})
    {%- endif %}
),

ranked_roots as (
    select
        trace_id,
        span_id,
        {%- for column in fallback_columns %}
        {{ column }},
        {%- endfor %}
        experiment_ids,
        event_time,
        end_time,
        duration_ms,
        status,
        error_type,
        final_status,
        entrypoint,
        locale,
        model_name,
        row_number() over (partition by trace_id order by event_time, span_id) as root_rank
    from request_spans
    where parent_span_id is null
),

roots as (
    select * from ranked_roots
    where root_rank = 1
),

trace_rollup as (
    select
        trace_id,
        {%- for column in fallback_columns %}
        min({{ column }}) as {{ column }},
        {%- endfor %}
        min(experiment_ids) as experiment_ids,
        min(event_time) as first_span_at,
        max(end_time) as last_span_end_at,
        count(*) as span_count,
        cast(sum(case when status = 'timeout' then 1 else 0 end) as bigint) as timeout_span_count,
        cast(sum(case when status = 'error' then 1 else 0 end) as bigint) as error_span_count,
        max(ingest_time) as last_span_ingest_at
    from spans
    group by trace_id
),

trace_cost as (
    select
        trace_id,
        {{ exact_sum('cost_usd') }} as cost_usd,
        cast(sum(case when is_unpriced then 1 else 0 end) as bigint) as unpriced_span_count
    from priced_spans
    group by trace_id
),

final as (
    select
        trace_rollup.trace_id,
        roots.span_id as root_span_id,
        {%- for column in fallback_columns %}
        coalesce(roots.{{ column }}, trace_rollup.{{ column }}) as {{ column }},
        {%- endfor %}
        coalesce(roots.experiment_ids, trace_rollup.experiment_ids) as experiment_ids,
        coalesce(roots.event_time, trace_rollup.first_span_at) as event_time,
        coalesce(roots.end_time, trace_rollup.last_span_end_at) as end_time,
        coalesce(
            roots.duration_ms,
            {{ duration_ms_between('trace_rollup.first_span_at', 'trace_rollup.last_span_end_at') }}
        ) as duration_ms,
        {{ utc_date('coalesce(roots.event_time, trace_rollup.first_span_at)') }} as trace_date,
        roots.status,
        roots.error_type,
        roots.final_status,
        roots.entrypoint,
        roots.locale,
        roots.model_name as root_model_name,
        roots.span_id is not null as has_root,
        trace_rollup.span_count,
        coalesce(trace_cost.cost_usd, 0.0) as cost_usd,
        trace_cost.unpriced_span_count,
        trace_cost.unpriced_span_count > 0 as has_unpriced_span,
        trace_rollup.timeout_span_count,
        trace_rollup.error_span_count,
        trace_rollup.last_span_ingest_at
    from trace_rollup
    left join roots
        on trace_rollup.trace_id = roots.trace_id
    left join trace_cost
        on trace_rollup.trace_id = trace_cost.trace_id
)

select * from final
