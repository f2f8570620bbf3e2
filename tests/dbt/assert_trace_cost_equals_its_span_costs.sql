{#-
    fct_requests.cost_usd of a trace is the sum of its spans' cost_usd in fct_spans. On an
    incremental run, over the traces with spans written since this test last passed
    (test_slices.sql; a cost is a function of the trace's spans, which feedback and annotations
    do not change): both sides of a trace are rebuilt together, from all its rows. Both slices
    keep the same watermark (spans only).
-#}
{%- set traces = singular_test_slice('trace_of_spans') %}
{%- set span_traces = singular_test_slice('span_trace_id') %}

with

requests as (
    select * from {{ ref('fct_requests') }}
    where {{ traces }}
),

spans as (
    select * from {{ ref('fct_spans') }}
    where {{ span_traces }}
),

span_cost as (
    select
        trace_id,
        coalesce(sum(cost_usd), 0) as cost_usd
    from spans
    group by trace_id
),

final as (
    select
        requests.trace_id,
        requests.cost_usd as request_cost_usd,
        span_cost.cost_usd as span_cost_usd
    from requests
    left join span_cost
        on requests.trace_id = span_cost.trace_id
    where span_cost.trace_id is null
        or abs(requests.cost_usd - span_cost.cost_usd) > 1e-9
)

select * from final
