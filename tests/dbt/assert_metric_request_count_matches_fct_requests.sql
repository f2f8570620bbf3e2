{#-
    Every trace is counted once in its day's `all` request_count, and every day with traces has
    one. On an incremental run, over the days written since this test last passed
    (test_slices.sql): metric_daily rebuilds a day from all its traces.
-#}

with

requests as (
    select * from {{ ref('fct_requests') }}
    where {{ singular_test_slice('trace_date') }}
),

metric_daily as (
    select * from {{ ref('metric_daily') }}
    where {{ singular_test_slice('period_start') }}
),

traces_per_day as (
    select
        {{ truncate_to('day', 'event_time') }} as period_start,
        count(*) as traces
    from requests
    group by {{ truncate_to('day', 'event_time') }}
),

counted_per_day as (
    select
        period_start,
        n as traces
    from metric_daily
    where metric = 'request_count' and segment_key = 'all'
),

final as (
    select
        coalesce(traces_per_day.period_start, counted_per_day.period_start) as period_start,
        traces_per_day.traces as traces_in_fct_requests,
        counted_per_day.traces as traces_in_metric_daily
    from traces_per_day
    full outer join counted_per_day
        on traces_per_day.period_start = counted_per_day.period_start
    where traces_per_day.traces is null
        or counted_per_day.traces is null
        or traces_per_day.traces <> counted_per_day.traces
)

select * from final
