{{
    config(
        materialized='view',
    )
}}
{#-
    One row per span: the envelope, the typed attributes of every span type (NULL where the
    key is not the span type's), cost, and its place in the trace (offset from the trace start,
    the trace's start and date: the root's).

    A view, deliberately: its rows are int_spans_priced's (incremental, delete+insert, the one
    table that holds the parsed attributes) placed on their trace by int_traces_enveloped
    (incremental by trace). Copying ~130 columns of every span into a second table costs as
    much as building int_spans_priced itself (about 6 CPU-seconds per million spans) and adds
    nothing: both inputs are maintained by the incremental mechanism in docs/warehouse.md, so
    fct_spans after an incremental run equals fct_spans after a full refresh, row for row.
    `last_ingest_at` is the trace's newest span ingest (feedback and annotations do not change
    a span row).
-#}

with

spans as (
    select * from {{ ref('int_spans_priced') }}
),

traces as (
    select * from {{ ref('int_traces_enveloped') }}
),

final as (
    select
        spans.*,
        traces.event_time as trace_started_at,
        traces.trace_date,
        {{ duration_ms_between('traces.event_time', 'spans.event_time') }} as offset_ms,
        traces.last_span_ingest_at as last_ingest_at
    from spans
    inner join traces
        on spans.trace_id = traces.trace_id
)

select * from final
