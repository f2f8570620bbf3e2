{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace id seen in any base table: its `trace_date` (int_traces_enveloped's: the
    UTC day of the root request span's start, else of the trace's earliest span), the UTC days of
    all its spans (`span_dates`), and the newest `_loaded_at` of its rows in each base table.
    Small (a few columns per trace), so the test slices (macros/incremental/test_slices.sql) read
    the days of the traces touched since a test last passed here, not in base_lake__spans.
    Incremental (delete+insert on trace_id): a run rebuilds, from all their rows in the three
    base tables, the traces with a row written since the model's watermark (docs/warehouse.md).
-#}

with

{% if is_incremental() %}
touched_traces as (
    {{ traces_loaded() }}
),

{% endif %}
spans as (
    select trace_id, span_type, parent_span_id, event_time, _loaded_at
    from {{ ref('base_lake__spans') }}
    where trace_id is not null
    {%- if is_incremental() %}
        and trace_id in (select trace_id from touched_traces)
        and {{ span_days_predicate(['spans', 'feedback', 'annotations'], this) }}
    {%- endif %}
),

feedback as (
    select trace_id, _loaded_at
    from {{ ref('base_lake__feedback') }}
    where trace_id is not null
    {%- if is_incremental() %}
        and trace_id in (select trace_id from touched_traces)
    {%- endif %}
),

annotations as (
    select trace_id, _loaded_at
    from {{ ref('base_lake__annotations') }}
    where trace_id is not null
    {%- if is_incremental() %}
        and trace_id in (select trace_id from touched_traces)
    {%- endif %}
),

span_stamps as (
    select
        trace_id,
        {{ utc_date(
            "coalesce(min(case when span_type = 'request' and parent_span_id is null then event_time end), "
            ~ "min(event_time))"
        ) }} as trace_date,
        {{ distinct_sorted_list_agg(utc_date('event_time')) }} as span_dates,
        max(_loaded_at) as spans_loaded_at
    from spans
    group by trace_id
),

feedback_stamps as (
    select
        trace_id,
        max(_loaded_at) as feedback_loaded_at
    from feedback
    group by trace_id
),

annotation_stamps as (
    select
        trace_id,
        max(_loaded_at) as annotations_loaded_at
    from annotations
    group by trace_id
),

trace_ids as (
    select trace_id from span_stamps
    union
    select trace_id from feedback_stamps
    union
    select trace_id from annotation_stamps
),

final as (
    select
        trace_ids.trace_id,
        span_stamps.trace_date,
        span_stamps.span_dates,
        span_stamps.spans_loaded_at,
        feedback_stamps.feedback_loaded_at,
        annotation_stamps.annotations_loaded_at
    from trace_ids
    left join span_stamps
        on trace_ids.trace_id = span_stamps.trace_id
    left join feedback_stamps
        on trace_ids.trace_id = feedback_stamps.trace_id
    left join annotation_stamps
        on trace_ids.trace_id = annotation_stamps.trace_id
)

select * from final
