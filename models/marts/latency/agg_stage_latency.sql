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
    The stage latency waterfall: per day, stage (span_type, operation_name) and request segment
    (route, model, task type, release, cache status), how long the stage takes (count, mean,
    percentiles) and what share of the requests' wall time it accounts for. Dimensions are the
    request's (root span's), so every span of a trace falls in the segment of its trace.
-#}

with

all_requests as (
    select * from {{ ref('fct_requests') }}
),

spans as (
    {#- the span envelope on its trace's day: fct_spans' columns without the wide view -#}
    select
        base_spans.span_id,
        base_spans.trace_id,
        base_spans.span_type,
        base_spans.operation_name,
        base_spans.duration_ms,
        traces.trace_date
    from {{ ref('base_lake__spans') }} as base_spans
    inner join {{ ref('int_traces_enveloped') }} as traces
        on base_spans.trace_id = traces.trace_id
),

requests as (
    {{ mart_requests_in_scope('all_requests') }}
),

day_lineage as (
    {{ mart_day_lineage('requests') }}
),

scoped_spans as (
    select * from spans
    where trace_date in (select trace_date from day_lineage)
),

segmented_requests as (
    select
        trace_id,
        trace_date,
        {{ none_if_null('route_name') }} as route_name,
        {{ none_if_null('model_name') }} as model_name,
        {{ none_if_null('task_type') }} as task_type,
        {{ none_if_null('release_sha') }} as release_sha,
        {{ none_if_null('cache_status') }} as cache_status,
        coalesce(duration_ms, 0) as root_duration_ms
    from requests
),

segment_totals as (
    {#- every trace of the segment: the waterfall's denominator -#}
    select
        trace_date,
        route_name,
        model_name,
        task_type,
        release_sha,
        cache_status,
        count(*) as segment_trace_count,
        {{ exact_sum('root_duration_ms', 3) }} as segment_root_duration_ms
    from segmented_requests
    group by trace_date, route_name, model_name, task_type, release_sha, cache_status
),

stage_spans as (
    select
        segmented_requests.trace_id,
        segmented_requests.trace_date,
        segmented_requests.route_name,
        segmented_requests.model_name,
        segmented_requests.task_type,
        segmented_requests.release_sha,
        segmented_requests.cache_status,
        segmented_requests.root_duration_ms,
        spans.span_type,
        {{ none_if_null('spans.operation_name') }} as operation_name,
        coalesce(spans.duration_ms, 0) as duration_ms
    from scoped_spans as spans
    inner join segmented_requests
        on spans.trace_id = segmented_requests.trace_id
),

stage_traces as (
    {#- one row per trace and stage: the root duration of the traces that have the stage -#}
    select
        trace_date,
        route_name,
        model_name,
        task_type,
        release_sha,
        cache_status,
        span_type,
        operation_name,
        trace_id,
        max(root_duration_ms) as root_duration_ms
    from stage_spans
    group by
        trace_date, route_name, model_name, task_type, release_sha, cache_status,
        span_type, operation_name, trace_id
),

stage_trace_totals as (
    select
        trace_date,
        route_name,
        model_name,
        task_type,
        release_sha,
        cache_status,
        span_type,
        operation_name,
        count(*) as trace_count,
        {{ exact_sum('root_duration_ms', 3) }} as stage_root_duration_ms
    from stage_traces
    group by
        trace_date, route_name, model_name, task_type, release_sha, cache_status,
        span_type, operation_name
),

stage_stats as (
    select
        trace_date,
        route_name,
        model_name,
        task_type,
        release_sha,
        cache_status,
        span_type,
        operation_name,
        count(*) as span_count,
        {{ exact_sum('duration_ms', 3) }} as duration_ms_sum,
        {{ exact_mean('duration_ms', 3) }} as duration_ms_mean,
        {{ percentile('duration_ms', 0.5) }} as duration_ms_p50,
        {{ percentile('duration_ms', 0.9) }} as duration_ms_p90,
        {{ percentile('duration_ms', 0.95) }} as duration_ms_p95,
        {{ percentile('duration_ms', 0.99) }} as duration_ms_p99,
        max(duration_ms) as duration_ms_max
    from stage_spans
    group by
        trace_date, route_name, model_name, task_type, release_sha, cache_status,
        span_type, operation_name
),

measured as (
    select
        {{ hash_key([
            'stage_stats.trace_date', 'stage_stats.span_type', 'stage_stats.operation_name',
            'stage_stats.route_name', 'stage_stats.model_name', 'stage_stats.task_type',
            'stage_stats.release_sha', 'stage_stats.cache_status',
        ]) }} as stage_segment_id,
        stage_stats.trace_date,
        stage_stats.span_type,
        stage_stats.operation_name,
        stage_stats.route_name,
        stage_stats.model_name,
        stage_stats.task_type,
        stage_stats.release_sha,
        stage_stats.cache_status,
        stage_stats.span_count,
        stage_trace_totals.trace_count,
        segment_totals.segment_trace_count,
        stage_stats.duration_ms_sum,
        stage_stats.duration_ms_mean,
        stage_stats.duration_ms_p50,
        stage_stats.duration_ms_p90,
        stage_stats.duration_ms_p95,
        stage_stats.duration_ms_p99,
        stage_stats.duration_ms_max,
        stage_trace_totals.stage_root_duration_ms,
        segment_totals.segment_root_duration_ms,
        {{ safe_divide('stage_stats.duration_ms_sum', 'segment_totals.segment_root_duration_ms') }}
            as share_of_wall_time,
        {{ safe_divide('stage_stats.duration_ms_sum', 'stage_trace_totals.stage_root_duration_ms') }}
            as share_of_wall_time_when_present,
        {{ safe_divide('stage_trace_totals.trace_count', 'segment_totals.segment_trace_count') }}
            as stage_presence_rate
    from stage_stats
    inner join stage_trace_totals
        on stage_stats.trace_date = stage_trace_totals.trace_date
        and stage_stats.route_name = stage_trace_totals.route_name
        and stage_stats.model_name = stage_trace_totals.model_name
        and stage_stats.task_type = stage_trace_totals.task_type
        and stage_stats.release_sha = stage_trace_totals.release_sha
        and stage_stats.cache_status = stage_trace_totals.cache_status
        and stage_stats.span_type = stage_trace_totals.span_type
        and stage_stats.operation_name = stage_trace_totals.operation_name
    inner join segment_totals
        on stage_stats.trace_date = segment_totals.trace_date
        and stage_stats.route_name = segment_totals.route_name
        and stage_stats.model_name = segment_totals.model_name
        and stage_stats.task_type = segment_totals.task_type
        and stage_stats.release_sha = segment_totals.release_sha
        and stage_stats.cache_status = segment_totals.cache_status
),

final as (
    select
        measured.*,
        {{ mart_lineage_columns('day_lineage') }}
    from measured
    inner join day_lineage
        on measured.trace_date = day_lineage.trace_date
)

{{ with_archived_days('final', 'trace_date') }}
