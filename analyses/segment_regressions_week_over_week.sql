{#-
    Which segments regressed this week against last? From metric_daily.

    For every metric and segment (`all`, route_name=, model_name=, task_type=, span_type=,
    tool_name=, ...) the n-weighted value of the 7 days ending `as_of` against the 7 days
    before, kept when the change goes the bad way for the metric (error, latency, cost,
    thumbs-down ... up; success, hit rate, score down) by at least `min_relative_change`, with
    at least `min_n` in both weeks. Ordered by the size of the regression. Neutral metrics
    (request_count, tool_call_rate, model_share) are left out. A week's value is
    sum(value * n) / sum(n): exact for rates and means, an approximation for latency_p95_ms.

    Run:
        dbt compile --select segment_regressions_week_over_week \
            --vars '{as_of: "2026-01-30", min_n: 30, min_relative_change: 0.1}'
        then run target/compiled/tracehouse/analyses/segment_regressions_week_over_week.sql
        against the warehouse. as_of defaults to the last day in metric_daily.
-#}

{%- set as_of = var('as_of', '') %}
{%- set min_n = var('min_n', 30) %}
{%- set min_relative_change = var('min_relative_change', 0.1) %}
{%- set worse_when_up = [
    'error_rate', 'latency_p95_ms', 'cost_per_request_usd', 'cost_per_successful_task_usd',
    'thumbs_down_rate', 'escalation_rate', 'regenerate_rate', 'required_tool_missing_rate',
    'tool_error_rate', 'tool_timeout_rate', 'retrieval_zero_result_rate',
    'context_truncation_rate', 'citation_mismatch_rate', 'guardrail_block_rate',
] %}
{%- set worse_when_down = ['task_success_rate', 'retrieval_hit_rate', 'retrieval_score_mean'] %}

with

metric_daily as (
    select * from {{ ref('metric_daily') }}
),

bounds as (
    select
        {%- if as_of %}
        cast('{{ as_of }}' as {{ sql_type('timestamp') }}) as as_of_start
        {%- else %}
        max(period_start) as as_of_start
        {%- endif %}
    from metric_daily
    where grain = 'day'
),

weeks as (
    select
        metric_daily.metric,
        metric_daily.segment_key,
        case
            when metric_daily.period_start > {{ days_before('bounds.as_of_start', 7) }} then 'this_week'
            else 'last_week'
        end as week,
        metric_daily.value,
        metric_daily.n
    from metric_daily
    cross join bounds
    where metric_daily.grain = 'day'
        and metric_daily.period_start <= bounds.as_of_start
        and metric_daily.period_start > {{ days_before('bounds.as_of_start', 14) }}
        and metric_daily.metric in (
            '{{ (worse_when_up + worse_when_down) | join("', '") }}'
        )
),

weekly as (
    select
        metric,
        segment_key,
        sum(case when week = 'this_week' then value * n end)
            / nullif(sum(case when week = 'this_week' then n end), 0) as value_this_week,
        sum(case when week = 'last_week' then value * n end)
            / nullif(sum(case when week = 'last_week' then n end), 0) as value_last_week,
        coalesce(sum(case when week = 'this_week' then n end), 0) as n_this_week,
        coalesce(sum(case when week = 'last_week' then n end), 0) as n_last_week
    from weeks
    group by metric, segment_key
),

compared as (
    select
        *,
        value_this_week - value_last_week as difference,
        {{ safe_divide('value_this_week - value_last_week', 'abs(value_last_week)') }} as relative_change,
        case
            when metric in ('{{ worse_when_down | join("', '") }}') then -1
            else 1
        end as bad_direction
    from weekly
),

final as (
    select
        (select as_of_start from bounds) as as_of_start,
        metric,
        segment_key,
        value_last_week,
        value_this_week,
        n_last_week,
        n_this_week,
        difference,
        relative_change,
        relative_change * bad_direction as regression
    from compared
    where n_this_week >= {{ min_n }}
        and n_last_week >= {{ min_n }}
        and relative_change * bad_direction >= {{ min_relative_change }}
)

select * from final
order by regression desc, metric, segment_key
