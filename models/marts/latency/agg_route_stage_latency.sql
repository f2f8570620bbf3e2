{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_vanished_days() }}"],
    )
}}
{#-
    The dashboard question "p95 latency by stage and day for one route", precomputed: per day,
    stage (span_type) and route (the request's, i.e. the root span's), the span count and the
    p50/p95/p99 of the stage's span durations. Percentiles do not combine across
    agg_stage_latency's finer grain, so this coarser grain is computed from the spans themselves.
    A span without a duration counts in span_count but not in the percentiles (as a SQL
    quantile over the raw spans). Incremental on the days whose spans a run touched
    (macros/portable/marts.sql): it reads no feedback or annotation, so late feedback does not
    rebuild a day.
-#}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests'), ['spans']) }}
),

day_lineage as (
    {{ mart_day_lineage('requests', ['spans']) }}
),

stage_spans as (
    select
        requests.trace_date,
        {{ none_if_null('requests.route_name') }} as route_name,
        base_spans.span_type,
        base_spans.duration_ms
    from {{ ref('base_lake__spans') }} as base_spans
    inner join requests
        on base_spans.trace_id = requests.trace_id
    where {{ mart_span_floor_condition('base_spans.event_time') }}
),

stage_stats as (
    select
        trace_date,
        span_type,
        route_name,
        count(*) as span_count,
        {{ percentile('duration_ms', 0.5) }} as duration_ms_p50,
        {{ percentile('duration_ms', 0.95) }} as duration_ms_p95,
        {{ percentile('duration_ms', 0.99) }} as duration_ms_p99
    from stage_spans
    group by trace_date, span_type, route_name
),

final as (
    select
        {{ hash_key(['stage_stats.trace_date', 'stage_stats.span_type', 'stage_stats.route_name']) }}
            as route_stage_day_id,
        stage_stats.trace_date,
        stage_stats.span_type,
        stage_stats.route_name,
        stage_stats.span_count,
        stage_stats.duration_ms_p50,
        stage_stats.duration_ms_p95,
        stage_stats.duration_ms_p99,
        {{ mart_lineage_columns('day_lineage', ['spans']) }}
    from stage_stats
    inner join day_lineage
        on stage_stats.trace_date = day_lineage.trace_date
)

{{ with_archived_days('final', 'trace_date') }}
