{#- lineage is spans-only: a warehouse built before drops the old lineage columns once -#}
{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook=["{{ drop_retired_columns(['last_feedback_ingest_at', 'last_annotation_ingest_at', 'last_ingest_at']) }}"],
        post_hook=["{{ delete_vanished_days() }}"],
    )
}}
{#-
    The stage latency waterfall: per day, stage (span_type, operation_name) and request segment
    (route, model, task type, release, cache status), how long the stage takes (count, mean,
    percentiles) and what share of the requests' wall time it accounts for. Dimensions are the
    request's (root span's), so every span of a trace falls in the segment of its trace.
    Incremental on the days whose spans a run touched (macros/portable/marts.sql): it reads no
    feedback or annotation, so late feedback or annotations do not rebuild a day.
-#}

{%- set segment_columns = ['route_name', 'model_name', 'task_type', 'release_sha', 'cache_status'] %}
{%- set fractions = [0.5, 0.9, 0.95, 0.99] %}
{#-
    Build cost (docs/warehouse.md, "Build times"): spans are joined once, to the requests with
    integer segment and trace keys, so span rows are narrow and every span-level aggregate groups
    by integers and the stage, not by five segment strings and the trace id; the four percentiles are one
    sorted state (percentiles()). A span's day is its trace's request day: fct_requests carries
    int_traces_enveloped's trace_date, so spans need no join to int_traces_enveloped (kept as a
    dependency below: the envelope is the source of that day).
-#}
-- depends_on: {{ ref('int_traces_enveloped') }}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests'), ['spans']) }}
),

day_lineage as (
    {{ mart_day_lineage('requests', ['spans']) }}
),

segmented_requests as (
    select
        trace_id,
        trace_date,
        {%- for column in segment_columns %}
        {{ none_if_null(column) }} as {{ column }},
        {%- endfor %}
        coalesce(duration_ms, 0) as root_duration_ms
    from requests
),

keyed_requests as (
    {#- internal integer keys of the segment and the trace: narrow span rows, cheap groups -#}
    select
        *,
        dense_rank() over (
            order by trace_date, {{ segment_columns | join(', ') }}
        ) as segment_key,
        row_number() over (
            order by trace_date, {{ segment_columns | join(', ') }}, trace_id
        ) as trace_key
    from segmented_requests
),

segment_totals as (
    {#- every trace of the segment: the waterfall's denominator -#}
    select
        segment_key,
        trace_date,
        {{ segment_columns | join(', ') }},
        count(*) as segment_trace_count,
        {{ exact_sum('root_duration_ms', 3) }} as segment_root_duration_ms
    from keyed_requests
    group by segment_key, trace_date, {{ segment_columns | join(', ') }}
),

stage_spans as (
    {#- the spans of the traces in scope (all of them on a full build), narrow -#}
    select
        keyed_requests.segment_key,
        keyed_requests.trace_key,
        keyed_requests.root_duration_ms,
        spans.span_type,
        {{ none_if_null('spans.operation_name') }} as operation_name,
        coalesce(spans.duration_ms, 0) as duration_ms
    from {{ ref('base_lake__spans') }} as spans
    inner join keyed_requests
        on spans.trace_id = keyed_requests.trace_id
    where {{ mart_span_floor_condition('spans.event_time') }}
),

stage_traces as (
    {#- one row per trace and stage: the root duration of the traces that have the stage -#}
    select
        segment_key,
        span_type,
        operation_name,
        trace_key,
        max(root_duration_ms) as root_duration_ms
    from stage_spans
    group by segment_key, span_type, operation_name, trace_key
),

stage_trace_totals as (
    select
        segment_key,
        span_type,
        operation_name,
        count(*) as trace_count,
        {{ exact_sum('root_duration_ms', 3) }} as stage_root_duration_ms
    from stage_traces
    group by segment_key, span_type, operation_name
),

stage_stats as (
    select
        segment_key,
        span_type,
        operation_name,
        count(*) as span_count,
        {{ exact_sum('duration_ms', 3) }} as duration_ms_sum,
        {{ exact_mean('duration_ms', 3) }} as duration_ms_mean,
        {{ percentiles('duration_ms', fractions) }} as duration_ms_percentiles,
        max(duration_ms) as duration_ms_max
    from stage_spans
    group by segment_key, span_type, operation_name
),

measured as (
    select
        {{ hash_key([
            'segment_totals.trace_date', 'stage_stats.span_type', 'stage_stats.operation_name',
            'segment_totals.route_name', 'segment_totals.model_name', 'segment_totals.task_type',
            'segment_totals.release_sha', 'segment_totals.cache_status',
        ]) }} as stage_segment_id,
        segment_totals.trace_date,
        stage_stats.span_type,
        stage_stats.operation_name,
        segment_totals.route_name,
        segment_totals.model_name,
        segment_totals.task_type,
        segment_totals.release_sha,
        segment_totals.cache_status,
        stage_stats.span_count,
        stage_trace_totals.trace_count,
        segment_totals.segment_trace_count,
        stage_stats.duration_ms_sum,
        stage_stats.duration_ms_mean,
        {%- for fraction in fractions %}
        {{ list_item('stage_stats.duration_ms_percentiles', loop.index) }}
            as duration_ms_p{{ (fraction * 100) | round | int }},
        {%- endfor %}
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
        on stage_stats.segment_key = stage_trace_totals.segment_key
        and stage_stats.span_type = stage_trace_totals.span_type
        and stage_stats.operation_name = stage_trace_totals.operation_name
    inner join segment_totals
        on stage_stats.segment_key = segment_totals.segment_key
),

final as (
    select
        measured.*,
        {{ mart_lineage_columns('day_lineage', ['spans']) }}
    from measured
    inner join day_lineage
        on measured.trace_date = day_lineage.trace_date
)

{{ with_archived_days('final', 'trace_date') }}
