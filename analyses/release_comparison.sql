{#-
    What changed between two releases? Every request-level metric side by side.

    One row per metric: the value and its denominator under release A and release B, the
    difference, the relative change, and whether B is better or worse (by the metric's
    polarity). Releases are `release_sha` values; by default B is the release first seen
    last (dim_versions.is_latest) and A the one it replaced.

    Run:
        dbt compile --select release_comparison --vars '{release_a: <sha>, release_b: <sha>}'
        then run target/compiled/tracehouse/analyses/release_comparison.sql against the
        warehouse (e.g. duckdb <warehouse>/tracehouse.duckdb < that file), or paste it in a
        notebook. Both vars are optional.
    For versions other than the release (prompt, model, retriever, ...) see agg_version_quality.
-#}

{%- set release_a = var('release_a', '') %}
{%- set release_b = var('release_b', '') %}
{#- name, value over the side's rows, denominator, polarity (+1 higher is better, -1 worse, 0 neutral) -#}
{%- set metrics = [
    ('request_count', 'count(*)', 'count(*)', 0),
    ('error_rate', "sum(case when is_error then 1 else 0 end)", 'count(*)', -1),
    ('latency_p50_ms', percentile('duration_ms', 0.5), 'count(duration_ms)', -1),
    ('latency_p95_ms', percentile('duration_ms', 0.95), 'count(duration_ms)', -1),
    ('cost_per_request_usd', 'sum(cost_usd)', 'count(*)', -1),
    ('cost_per_successful_task_usd', 'sum(cost_usd)', 'sum(case when is_successful_task then 1 else 0 end)', -1),
    ('task_success_rate', 'sum(case when is_successful_task then 1 else 0 end)', 'count(*)', 1),
    ('thumbs_up_rate', 'sum(case when has_thumbs_up then 1 else 0 end)', 'count(*)', 1),
    ('thumbs_down_rate', 'sum(case when has_thumbs_down then 1 else 0 end)', 'count(*)', -1),
    ('escalation_rate', 'sum(case when has_escalation then 1 else 0 end)', 'count(*)', -1),
    ('regenerate_rate', 'sum(case when has_regenerate then 1 else 0 end)', 'count(*)', -1),
    ('rephrase_rate', 'sum(case when has_rephrase then 1 else 0 end)', 'count(*)', -1),
    ('task_abandoned_rate', 'sum(case when has_task_abandoned then 1 else 0 end)', 'count(*)', -1),
    ('tool_call_rate', 'sum(case when tool_call_count > 0 then 1 else 0 end)', 'count(*)', 0),
    ('required_tool_missing_rate', 'sum(case when is_required_tool_missing then 1 else 0 end)', 'sum(case when needs_tool then 1 else 0 end)', -1),
    ('tool_error_rate', 'sum(tool_error_count)', 'sum(tool_call_count)', -1),
    ('tool_timeout_rate', 'sum(tool_timeout_count)', 'sum(tool_call_count)', -1),
    ('retrieval_hit_rate', 'sum(case when is_retrieval_hit then 1 else 0 end)', 'sum(case when is_retrieval_judged then 1 else 0 end)', 1),
    ('retrieval_zero_result_rate', 'sum(retrieval_zero_result_span_count)', 'sum(retrieval_span_count)', -1),
    ('retrieval_score_mean', 'sum(retrieval_score_sum)', 'sum(retrieval_score_count)', 1),
    ('context_truncation_rate', 'sum(case when is_context_truncated then 1 else 0 end)', 'count(*)', -1),
    ('citation_mismatch_rate', 'sum(case when is_citation_mismatch then 1 else 0 end)', 'sum(case when has_citation_check then 1 else 0 end)', -1),
    ('guardrail_block_rate', 'sum(case when is_guardrail_blocked then 1 else 0 end)', 'count(*)', -1),
    ('input_tokens_mean', 'sum(input_tokens)', 'count(*)', 0),
    ('output_tokens_mean', 'sum(output_tokens)', 'count(*)', 0),
    ('correctness_mean', 'sum(correctness)', 'count(correctness)', 1),
    ('groundedness_mean', 'sum(groundedness)', 'count(groundedness)', 1),
    ('citation_quality_mean', 'sum(citation_quality)', 'count(citation_quality)', 1),
    ('completeness_mean', 'sum(completeness)', 'count(completeness)', 1),
    ('tool_use_correct_share', 'sum(case when tool_use_correct then 1 else 0 end)', 'count(tool_use_correct)', 1),
    ('policy_compliant_share', 'sum(case when policy_compliant then 1 else 0 end)', 'count(policy_compliant)', 1),
] %}
{#- metrics whose value is not a ratio: the numerator is the value itself -#}
{%- set not_ratios = ['request_count', 'latency_p50_ms', 'latency_p95_ms'] %}

with

requests as (
    select * from {{ ref('fct_requests') }}
),

versions as (
    select * from {{ ref('dim_versions') }}
),

latest_release as (
    select
        version_value as release_sha,
        previous_value as previous_release_sha
    from versions
    where version_dimension = 'release_sha'
        and scope_key = 'all'
        and is_latest
),

chosen as (
    select
        coalesce(
            nullif('{{ release_a }}', ''), (select previous_release_sha from latest_release)
        ) as release_a,
        coalesce(nullif('{{ release_b }}', ''), (select release_sha from latest_release)) as release_b
),

sided as (
    select
        case when requests.release_sha = chosen.release_a then 'a' else 'b' end as side,
        requests.*
    from requests
    cross join chosen
    where requests.release_sha in (chosen.release_a, chosen.release_b)
),

per_side as (
    select
        side,
        {%- for name, value, n, polarity in metrics %}
        {{ value }} as {{ name }}__value,
        {{ n }} as {{ name }}__n{{ "," if not loop.last }}
        {%- endfor %}
    from sided
    group by side
),

long_format as (
    {%- for name, value, n, polarity in metrics %}
    select
        {{ loop.index }} as metric_order,
        '{{ name }}' as metric,
        {{ polarity }} as polarity,
        side,
        {%- if name in not_ratios %}
        cast({{ name }}__value as double) as value,
        {%- else %}
        {{ safe_divide(name ~ '__value', name ~ '__n') }} as value,
        {%- endif %}
        {{ name }}__n as n
    from per_side
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

side_by_side as (
    select
        metric_order,
        metric,
        polarity,
        max(case when side = 'a' then value end) as value_a,
        max(case when side = 'b' then value end) as value_b,
        max(case when side = 'a' then n end) as n_a,
        max(case when side = 'b' then n end) as n_b
    from long_format
    group by metric_order, metric, polarity
),

final as (
    select
        chosen.release_a,
        chosen.release_b,
        side_by_side.metric_order,
        side_by_side.metric,
        side_by_side.value_a,
        side_by_side.value_b,
        side_by_side.n_a,
        side_by_side.n_b,
        side_by_side.value_b - side_by_side.value_a as difference,
        {{ safe_divide('side_by_side.value_b - side_by_side.value_a', 'abs(side_by_side.value_a)') }}
            as relative_change,
        case
            when side_by_side.polarity = 0 then 'neutral'
            when side_by_side.value_a = side_by_side.value_b then 'same'
            when (side_by_side.value_b - side_by_side.value_a) * side_by_side.polarity > 0 then 'better'
            when (side_by_side.value_b - side_by_side.value_a) * side_by_side.polarity < 0 then 'worse'
        end as verdict
    from side_by_side
    cross join chosen
)

select * from final
order by metric_order
