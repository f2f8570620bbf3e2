{#-
    The body of `metric_daily` / `metric_hourly`: the contract's metric series in long format.

    Two grouped passes, not one scan per metric and segment:
      1. trace-level metrics from fct_requests, GROUPING SETS over (period), (period, route_name),
         (period, model_name), (period, task_type): every metric for `all` and each segment;
      2. span-level series from the spans (base_lake__spans on int_traces_enveloped: the
         columns of fct_spans they need), GROUPING SETS over (period, span_type) and
         (period, tool_name of tool_call spans): latency_p95_ms per stage, and the tool metrics
         (tool_error_rate, tool_timeout_rate, latency_p95_ms) per tool.
    Then one cross join with the metric list turns the per-segment columns into rows. A row
    whose denominator is 0 is left out (the metric is undefined there).

    A trace and all its spans belong to the period of the root's event_time.

    Incremental (delete+insert on period_start): rebuild the periods of every trace that the
    base tables wrote a span, feedback or annotation row of since this model's watermark
    (macros/incremental/loaded.sql), plus any period whose trace count differs from what is
    stored (a trace whose root landed late and moved period). Each rebuilt period is computed
    from all of its traces, so it equals a full refresh. Every row is recomputed (spans
    re-read, percentiles taken) only for the periods with new spans or a changed trace count
    (`span_periods`). A period rebuilt because of feedback or annotations alone has the same
    spans and the same traces: only the metrics feedback or annotations can move
    (`label_metrics()`: success, thumbs, escalation, regenerate, required tools, judged
    retrieval) are recomputed from fct_requests, in one pass without percentiles; it keeps its
    other stored rows (span_type= and tool_name= segments included), and every row gets the
    period's new lineage. So 57 late annotations over 15 days do not re-read 15 days of spans.
-#}

{% macro metric_trace_segments() %}
    {#- The fct_requests columns every metric is segmented by (var `metric_segments` narrows it). -#}
    {{ return(var('metric_segments', ['route_name', 'model_name', 'task_type'])) }}
{% endmacro %}


{% macro metric_definitions() %}
    {#-
        [metric, value expression, n expression] over the per-segment statistics; var `metrics`
        (a list of names) narrows the set, e.g. in unit tests.
    -#}
    {%- set only = var('metrics', none) -%}
    {%- set definitions = [
        ['request_count', 'traces', 'traces'],
        ['error_rate', 'errors / traces', 'traces'],
        ['latency_p95_ms', 'latency_p95', 'latency_n'],
        ['latency_p50_ms', 'latency_p50', 'latency_n'],
        ['cost_per_request_usd', 'cost_usd / traces', 'traces'],
        ['cost_usd_total', 'cost_usd', 'traces'],
        ['task_success_rate', 'successes / traces', 'traces'],
        ['cost_per_successful_task_usd', 'cost_usd / successes', 'successes'],
        ['thumbs_down_rate', 'thumbs_down / traces', 'traces'],
        ['thumbs_up_rate', 'thumbs_up / traces', 'traces'],
        ['escalation_rate', 'escalations / traces', 'traces'],
        ['regenerate_rate', 'regenerates / traces', 'traces'],
        ['tool_call_rate', 'tool_traces / traces', 'traces'],
        ['required_tool_missing_rate', 'missing_tool_traces / needs_tool_traces', 'needs_tool_traces'],
        ['tool_error_rate', 'tool_errors / tool_calls', 'tool_calls'],
        ['tool_timeout_rate', 'tool_timeouts / tool_calls', 'tool_calls'],
        ['retrieval_hit_rate', 'retrieval_hits / retrieval_judged', 'retrieval_judged'],
        ['retrieval_zero_result_rate', 'zero_result_spans / retrieval_spans', 'retrieval_spans'],
        ['retrieval_score_mean', 'retrieval_score_sum / retrieval_scores', 'retrieval_scores'],
        ['context_truncation_rate', 'truncated / traces', 'traces'],
        ['citation_mismatch_rate', 'citation_mismatches / citation_checked', 'citation_checked'],
        ['guardrail_block_rate', 'blocked / traces', 'traces'],
        ['format_parse_failure_rate', 'format_failures / traces', 'traces'],
        ['model_share', 'traces / period_traces', 'period_traces'],
    ] -%}
    {%- set chosen = [] -%}
    {%- for definition in definitions if only is none or definition[0] in only -%}
        {%- do chosen.append(definition) -%}
    {%- endfor -%}
    {{ return(chosen) }}
{% endmacro %}


{% macro label_metrics() %}
    {#-
        The metrics feedback or annotations can move (a statistic of theirs reads the success
        rule, thumbs, escalation, regenerate, required tools or judged retrieval), and every
        statistic those metrics read: a period rebuilt for feedback / annotations alone
        recomputes only them ({'metrics': [...], 'stats': [...]}).
    -#}
    {%- set label_stats = [
        'successes', 'thumbs_down', 'thumbs_up', 'escalations', 'regenerates',
        'needs_tool_traces', 'missing_tool_traces', 'retrieval_judged', 'retrieval_hits',
    ] -%}
    {%- set metrics = [] -%}
    {%- set stats = [] -%}
    {%- for metric, value, n in metric_definitions() -%}
        {%- set tokens = (value ~ ' ' ~ n).split() -%}
        {%- if tokens | select('in', label_stats) | list -%}
            {%- do metrics.append(metric) -%}
            {%- for token in tokens if token != '/' and token not in stats -%}
                {%- do stats.append(token) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return({'metrics': metrics, 'stats': stats}) }}
{% endmacro %}


{% macro sql_string_list(values) -%}
    {#- ('a', 'b'): never empty (a list of no value is one that matches nothing). -#}
    ('{{ (values or ['']) | join("', '") }}')
{%- endmacro %}


{% macro metric_trace_grouped(segments, expressions, only) %}
    {#-
        select ... from traces (where and group by follow): per period and segment, every
        statistic of `expressions` [(name, aggregate)], or only those named in `only` (the
        others NULL).
    -#}
    select
        period_start,
        case
            {%- for segment in segments %}
            when grouping({{ segment }}) = 0 then '{{ segment }}=' || coalesce({{ segment }}, 'unknown')
            {%- endfor %}
            else 'all'
        end as segment_key,
        {%- for name, expression in expressions %}
        {%- if only is none or name in only %}
        {{ expression }} as {{ name }}{{ "," if not loop.last }}
        {%- else %}
        cast(null as {{ 'double' if name in ('latency_p95', 'latency_p50') else 'bigint' }}) as {{ name }}{{ "," if not loop.last }}
        {%- endif %}
        {%- endfor %}
    from traces
{% endmacro %}


{% macro metric_trace_grouping_sets(segments) %}
    group by grouping sets (
        (period_start),
        {%- for segment in segments %}
        (period_start, {{ segment }}){{ "," if not loop.last }}
        {%- endfor %}
    )
{% endmacro %}


{% macro count_if_true(expression) -%}
    cast(sum(case when {{ expression }} then 1 else 0 end) as bigint)
{%- endmacro %}


{% macro metric_series(grain) %}
{{- loaded_base_refs() }}
{%- set segments = metric_trace_segments() -%}
{%- set stats = [
    'traces', 'errors', 'latency_p95', 'latency_p50', 'latency_n', 'cost_usd', 'successes',
    'thumbs_down', 'thumbs_up', 'escalations', 'regenerates', 'tool_traces', 'needs_tool_traces',
    'missing_tool_traces', 'tool_calls', 'tool_errors', 'tool_timeouts', 'retrieval_judged',
    'retrieval_hits', 'retrieval_spans', 'zero_result_spans', 'retrieval_score_sum',
    'retrieval_scores', 'truncated', 'citation_checked', 'citation_mismatches', 'blocked',
    'format_failures', 'period_traces',
] -%}
{#- the fct_requests columns the trace-level pass reads (fct_requests is ~150 columns wide) -#}
{%- set request_columns = segments + [
    'is_error', 'duration_ms', 'cost_usd', 'is_successful_task', 'has_thumbs_down',
    'has_thumbs_up', 'has_escalation', 'has_regenerate', 'has_tool_call', 'needs_tool',
    'is_required_tool_missing', 'tool_call_count', 'tool_error_count', 'tool_timeout_count',
    'is_retrieval_judged', 'is_retrieval_hit', 'retrieval_span_count',
    'retrieval_zero_result_span_count', 'retrieval_score_sum', 'retrieval_score_count',
    'is_context_truncated', 'has_citation_check', 'is_citation_mismatch', 'is_guardrail_blocked',
    'has_format_failure', 'last_ingest_at', 'last_span_ingest_at', 'last_feedback_ingest_at',
    'last_annotation_ingest_at',
] -%}
with

requests_with_period as (
    {#- every trace's period, narrow: which periods to build, trace counts -#}
    select
        trace_id,
        {{ truncate_to(grain, 'event_time') }} as period_start
    from {{ ref('fct_requests') }}
),

{% if is_incremental() %}
stored_counts as (
    select
        period_start,
        n as trace_count
    from {{ this }}
    where metric = 'request_count' and segment_key = 'all'
),

current_counts as (
    select
        period_start,
        count(*) as trace_count
    from requests_with_period
    group by period_start
),

span_periods as (
    {#- periods whose spans or traces may have changed: every row is recomputed -#}
    select period_start
    from requests_with_period
    where trace_id in ({{ traces_loaded(['spans']) }})
    union
    select coalesce(current_counts.period_start, stored_counts.period_start) as period_start
    from current_counts
    full outer join stored_counts
        on current_counts.period_start = stored_counts.period_start
    where current_counts.trace_count is null
        or stored_counts.trace_count is null
        or current_counts.trace_count <> stored_counts.trace_count
),

periods_to_build as (
    {#- plus the periods with new feedback / annotations only: trace-level rows recomputed #}
    select period_start from span_periods
    union
    select period_start
    from requests_with_period
    where trace_id in ({{ traces_loaded(['feedback', 'annotations']) }})
),

span_traces as (
    select trace_id
    from requests_with_period
    where period_start in (select period_start from span_periods)
),

{% endif %}
spans as (
    {#-
        The span envelope placed on its trace, what fct_spans gives for these columns
        (trace_started_at is the trace's event_time) without the wide view's 13-view union
        and pricing join: about 7x cheaper to scan. Incremental: only the spans of the traces
        of `span_periods` (a semi join on trace_id before the envelope join).
    -#}
    select
        base_spans.span_id,
        base_spans.trace_id,
        base_spans.span_type,
        base_spans.tool_name,
        base_spans.duration_ms,
        base_spans.status,
        traces.event_time as trace_started_at
    from {{ ref('base_lake__spans') }} as base_spans
    inner join {{ ref('int_traces_enveloped') }} as traces
        on base_spans.trace_id = traces.trace_id
    {%- if is_incremental() %}
    where base_spans.trace_id in (select trace_id from span_traces)
    {%- endif %}
),

traces as (
    {#- the traces of the periods this run builds, with the columns the metrics read -#}
    select * from (
        select
            {{ truncate_to(grain, 'event_time') }} as period_start,
            {%- for column in request_columns %}
            {{ column }},
            {%- endfor %}
            trace_id
        from {{ ref('fct_requests') }}
    ) as requests
    {%- if is_incremental() %}
    where period_start in (select period_start from periods_to_build)
    {%- endif %}
),

period_lineage as (
    select
        period_start,
        max(last_ingest_at) as last_ingest_at,
        max(last_span_ingest_at) as last_span_ingest_at,
        max(last_feedback_ingest_at) as last_feedback_ingest_at,
        max(last_annotation_ingest_at) as last_annotation_ingest_at
    from traces
    group by period_start
),

{%- set trace_stat_expressions = [
    ('traces', 'count(*)'),
    ('errors', count_if_true('is_error')),
    ('latency_p95', percentile('duration_ms', 0.95)),
    ('latency_p50', percentile('duration_ms', 0.5)),
    ('latency_n', 'count(duration_ms)'),
    ('cost_usd', exact_sum('cost_usd')),
    ('successes', count_if_true('is_successful_task')),
    ('thumbs_down', count_if_true('has_thumbs_down')),
    ('thumbs_up', count_if_true('has_thumbs_up')),
    ('escalations', count_if_true('has_escalation')),
    ('regenerates', count_if_true('has_regenerate')),
    ('tool_traces', count_if_true('has_tool_call')),
    ('needs_tool_traces', count_if_true('needs_tool')),
    ('missing_tool_traces', count_if_true('is_required_tool_missing')),
    ('tool_calls', 'cast(sum(tool_call_count) as bigint)'),
    ('tool_errors', 'cast(sum(tool_error_count) as bigint)'),
    ('tool_timeouts', 'cast(sum(tool_timeout_count) as bigint)'),
    ('retrieval_judged', count_if_true('is_retrieval_judged')),
    ('retrieval_hits', count_if_true('is_retrieval_hit')),
    ('retrieval_spans', 'cast(sum(retrieval_span_count) as bigint)'),
    ('zero_result_spans', 'cast(sum(retrieval_zero_result_span_count) as bigint)'),
    ('retrieval_score_sum', exact_sum('retrieval_score_sum', 9)),
    ('retrieval_scores', 'cast(sum(retrieval_score_count) as bigint)'),
    ('truncated', count_if_true('is_context_truncated')),
    ('citation_checked', count_if_true('has_citation_check')),
    ('citation_mismatches', count_if_true('is_citation_mismatch')),
    ('blocked', count_if_true('is_guardrail_blocked')),
    ('format_failures', count_if_true('has_format_failure')),
] -%}
{%- set label = label_metrics() -%}
trace_grouped as (
    {#- every trace-level statistic; incremental: of the periods with new spans (or count) -#}
    {{ metric_trace_grouped(segments, trace_stat_expressions, none) }}
    {%- if is_incremental() %}
    where period_start in (select period_start from span_periods)
    {%- endif %}
    {{ metric_trace_grouping_sets(segments) }}
),

{% if is_incremental() %}
label_grouped as (
    {#-
        The periods rebuilt for feedback / annotations alone: only the statistics of the
        metrics those can move (label_metric_names()); no percentile.
    -#}
    {{ metric_trace_grouped(segments, trace_stat_expressions, label['stats']) }}
    where period_start not in (select period_start from span_periods)
    {{ metric_trace_grouping_sets(segments) }}
),

{% endif %}
trace_stats as (
    select
        trace_grouped.*,
        case
            when segment_key like 'model_name=%'
                then max(case when segment_key = 'all' then traces end) over (partition by period_start)
        end as period_traces,
        0 as is_label_pass
    from trace_grouped
    {%- if is_incremental() %}
    union all
    select
        label_grouped.*,
        cast(null as bigint) as period_traces,
        1 as is_label_pass
    from label_grouped
    {%- endif %}
),

span_rows as (
    select
        {{ truncate_to(grain, 'trace_started_at') }} as period_start,
        span_type,
        case when span_type = 'tool_call' then coalesce(tool_name, 'unknown') end as tool_key,
        duration_ms,
        status
    from spans
    {%- if is_incremental() %}
    where {{ truncate_to(grain, 'trace_started_at') }} in (select period_start from span_periods)
    {%- endif %}
),

span_grouped as (
    select
        period_start,
        grouping(span_type) as is_tool_segment,
        span_type,
        tool_key,
        {{ percentile('duration_ms', 0.95) }} as latency_p95,
        {{ percentile('duration_ms', 0.5) }} as latency_p50,
        count(duration_ms) as latency_n,
        count(*) as span_count,
        {{ count_if_true("status <> 'ok'") }} as not_ok_count,
        {{ count_if_true("status = 'timeout'") }} as timeout_count
    from span_rows
    group by grouping sets ((period_start, span_type), (period_start, tool_key))
),

span_stats as (
    select
        period_start,
        case
            when is_tool_segment = 1 then 'tool_name=' || tool_key
            else 'span_type=' || span_type
        end as segment_key,
        latency_p95,
        latency_p50,
        latency_n,
        case when is_tool_segment = 1 then span_count end as tool_calls,
        case when is_tool_segment = 1 then not_ok_count end as tool_errors,
        case when is_tool_segment = 1 then timeout_count end as tool_timeouts
    from span_grouped
    where is_tool_segment = 0 or tool_key is not null
),

segment_stats as (
    select
        period_start,
        segment_key,
        {%- for stat in stats %}
        {{ stat }},
        {%- endfor %}
        is_label_pass
    from trace_stats
    union all
    select
        period_start,
        segment_key,
        {%- for stat in stats %}
        {%- if stat in ('latency_p95', 'latency_p50', 'latency_n', 'tool_calls', 'tool_errors', 'tool_timeouts') %}
        {{ stat }}{{ "," if not loop.last }}
        {%- else %}
        null as {{ stat }}{{ "," if not loop.last }}
        {%- endif %}
        {%- endfor %},
        0 as is_label_pass
    from span_stats
),

metric_names as (
    {%- for definition in metric_definitions() %}
    select '{{ definition[0] }}' as metric{{ " union all" if not loop.last }}
    {%- endfor %}
),

long_format as (
    select
        metric_names.metric,
        segment_stats.period_start,
        segment_stats.segment_key,
        case metric_names.metric
            {%- for metric, value, n in metric_definitions() %}
            when '{{ metric }}' then cast({{ value.replace('/', '* 1.0 /') }} as double)
            {%- endfor %}
        end as value,
        case metric_names.metric
            {%- for metric, value, n in metric_definitions() %}
            when '{{ metric }}' then cast({{ n }} as bigint)
            {%- endfor %}
        end as n
    from segment_stats
    cross join metric_names
    {%- if is_incremental() %}
    where segment_stats.is_label_pass = 0
        or metric_names.metric in {{ sql_string_list(label['metrics']) }}
    {%- endif %}
),

{% if is_incremental() %}
kept_rows as (
    {#-
        The periods rebuilt for feedback / annotations alone keep every stored row of the
        metrics those cannot move (same spans, same traces: the same figures), span-level
        segments included.
    -#}
    select
        metric,
        period_start,
        segment_key,
        value,
        n
    from {{ this }}
    where period_start in (select period_start from periods_to_build)
        and period_start not in (select period_start from span_periods)
        and metric not in {{ sql_string_list(label['metrics']) }}
        and metric in (select metric from metric_names)
),

{% endif %}
metric_rows as (
    select
        metric,
        period_start,
        segment_key,
        value,
        n
    from long_format
    where n > 0
    {%- if is_incremental() %}
    union all
    select
        metric,
        period_start,
        segment_key,
        value,
        n
    from kept_rows
    {%- endif %}
),

final as (
    select
        metric_rows.metric,
        '{{ grain }}' as grain,
        metric_rows.period_start,
        metric_rows.segment_key,
        metric_rows.value,
        metric_rows.n,
        period_lineage.last_ingest_at,
        period_lineage.last_span_ingest_at,
        period_lineage.last_feedback_ingest_at,
        period_lineage.last_annotation_ingest_at
    from metric_rows
    inner join period_lineage
        on metric_rows.period_start = period_lineage.period_start
)

{{ with_archived_days('final', utc_date('period_start')) }}
{% endmacro %}


{% macro delete_vanished_periods(grain) %}
    {#-
        Post-hook: a period none of whose traces is still there (its only trace moved to another
        period when its root landed late) is deleted; delete+insert alone would keep it.
    -#}
    {{ delete_where(
        "period_start not in (select distinct " ~ truncate_to(grain, 'event_time')
        ~ " from " ~ ref('fct_requests') ~ ") " ~ and_not_archived(utc_date('period_start'))
    ) }}
{% endmacro %}
