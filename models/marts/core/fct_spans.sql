{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per span: the envelope, the typed attributes of every span type (NULL where the
    key is not the span type's), cost, and its place in the trace (offset from the root start,
    the trace's date). Incremental by trace: delete+insert of every span of the traces whose
    spans landed after this model's watermark (max `last_ingest_at`, the newest span ingest of
    the trace) minus `lookback_days`. Feedback and annotations do not change a span row.
-#}

with

spans as (
    select * from {{ ref('int_spans_priced') }}
),

requests as (
    select * from {{ ref('fct_requests') }}
),

requests_in_scope as (
    select
        trace_id,
        event_time as trace_started_at,
        trace_date,
        last_span_ingest_at
    from requests
    {%- if is_incremental() %}
    where {{ newer_than_watermark('last_span_ingest_at', 'last_ingest_at') }}
    {%- endif %}
),

final as (
    select
        spans.*,
        requests_in_scope.trace_started_at,
        requests_in_scope.trace_date,
        {{ duration_ms_between('requests_in_scope.trace_started_at', 'spans.event_time') }} as offset_ms,
        requests_in_scope.last_span_ingest_at as last_ingest_at
    from spans
    inner join requests_in_scope
        on spans.trace_id = requests_in_scope.trace_id
)

select * from final
