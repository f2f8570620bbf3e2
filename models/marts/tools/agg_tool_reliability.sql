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
    Tool reliability and tool-use correctness per day, tool, tool version and request segment
    (model, route, prompt version).

    Operational measures count `tool_call` spans (a span is one call, retries inside it).
    Semantic measures count (trace, tool) pairs: every tool a trace called or was required to
    call. A required tool that was never called has no version: its pair is counted under
    tool_version '(none)', so read expected-tool-called and required-missing rates per tool
    (summing over tool_version), not per version. A trace's requirements are known when
    fct_requests.required_tools_source is not NULL (an annotation, or the tool_requirements rules).
-#}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests')) }}
),

day_lineage as (
    {{ mart_day_lineage('requests') }}
),

tool_call_spans as (
    {#- fct_spans' tool_call rows (with their trace's day), not the wide view -#}
    select
        typed_spans.*,
        traces.trace_date
    from {{ ref('stg_lake__tool_call_spans') }} as typed_spans
    inner join {{ ref('int_traces_enveloped') }} as traces
        on typed_spans.trace_id = traces.trace_id
    where traces.trace_date in (select trace_date from day_lineage)
        and {{ mart_span_floor_condition('typed_spans.event_time') }}
),

segmented_requests as (
    select
        trace_id,
        trace_date,
        {{ none_if_null('model_name') }} as model_name,
        {{ none_if_null('route_name') }} as route_name,
        {{ none_if_null('prompt_version') }} as prompt_version,
        required_tools,
        required_tools_source is not null as is_requirement_known,
        coalesce(is_successful_task, false) as is_successful_task
    from requests
),

segment_totals as (
    select
        trace_date,
        model_name,
        route_name,
        prompt_version,
        count(*) as segment_trace_count,
        sum(case when is_requirement_known then 1 else 0 end) as segment_labelled_trace_count
    from segmented_requests
    group by trace_date, model_name, route_name, prompt_version
),

calls as (
    select
        segmented_requests.trace_id,
        segmented_requests.trace_date,
        segmented_requests.model_name,
        segmented_requests.route_name,
        segmented_requests.prompt_version,
        {{ none_if_null('tool_call_spans.tool_name') }} as tool_name,
        {{ none_if_null('tool_call_spans.tool_version') }} as tool_version,
        tool_call_spans.status,
        coalesce(tool_call_spans.error_category, tool_call_spans.error_type) as error_kind,
        coalesce(tool_call_spans.retries, 0) as retries,
        tool_call_spans.duration_ms
    from tool_call_spans
    inner join segmented_requests
        on tool_call_spans.trace_id = segmented_requests.trace_id
),

call_measures as (
    select
        trace_date,
        model_name,
        route_name,
        prompt_version,
        tool_name,
        tool_version,
        count(*) as call_count,
        count(distinct trace_id) as calling_trace_count,
        sum(case when status <> 'ok' then 1 else 0 end) as error_call_count,
        sum(case when status = 'timeout' then 1 else 0 end) as timeout_call_count,
        sum(case when retries > 0 then 1 else 0 end) as retried_call_count,
        sum(retries) as retries_sum,
        sum(case when error_kind in ('invalid_args', 'invalid_arguments') then 1 else 0 end)
            as invalid_args_call_count,
        sum(case when error_kind like 'dependency%' then 1 else 0 end) as dependency_failure_call_count,
        {{ exact_mean('duration_ms', 3) }} as duration_ms_mean,
        {{ percentile('duration_ms', 0.5) }} as duration_ms_p50,
        {{ percentile('duration_ms', 0.95) }} as duration_ms_p95
    from calls
    group by trace_date, model_name, route_name, prompt_version, tool_name, tool_version
),

called_pairs as (
    {#- one row per trace and tool it called; a tool called in two versions counts once, lowest -#}
    select
        trace_id,
        tool_name,
        min(tool_version) as tool_version,
        min(case when status = 'ok' then 1 else 0 end) = 1 as is_all_calls_ok
    from calls
    group by trace_id, tool_name
),

required_pairs as (
    select distinct
        segmented_requests.trace_id,
        {{ none_if_null('required.value') }} as tool_name
    from segmented_requests
    {{ unnest_join('segmented_requests.required_tools', 'required') }}
    where segmented_requests.is_requirement_known
),

pair_keys as (
    select trace_id, tool_name from called_pairs
    union
    select trace_id, tool_name from required_pairs
),

pairs as (
    select
        segmented_requests.trace_date,
        segmented_requests.model_name,
        segmented_requests.route_name,
        segmented_requests.prompt_version,
        pair_keys.tool_name,
        coalesce(called_pairs.tool_version, '(none)') as tool_version,
        called_pairs.trace_id is not null as is_called,
        required_pairs.trace_id is not null as is_required,
        segmented_requests.is_requirement_known,
        coalesce(called_pairs.is_all_calls_ok, false) as is_all_calls_ok,
        segmented_requests.is_successful_task
    from pair_keys
    inner join segmented_requests
        on pair_keys.trace_id = segmented_requests.trace_id
    left join called_pairs
        on pair_keys.trace_id = called_pairs.trace_id
        and pair_keys.tool_name = called_pairs.tool_name
    left join required_pairs
        on pair_keys.trace_id = required_pairs.trace_id
        and pair_keys.tool_name = required_pairs.tool_name
),

pair_measures as (
    select
        trace_date,
        model_name,
        route_name,
        prompt_version,
        tool_name,
        tool_version,
        sum(case when is_required then 1 else 0 end) as required_trace_count,
        sum(case when is_required and is_called then 1 else 0 end) as required_called_count,
        sum(case when is_required and not is_called then 1 else 0 end) as required_missing_count,
        sum(case when is_called and is_requirement_known then 1 else 0 end) as called_labelled_count,
        sum(case when is_called and is_requirement_known and not is_required then 1 else 0 end)
            as unnecessary_call_count,
        sum(case when is_called and is_all_calls_ok then 1 else 0 end) as tool_success_trace_count,
        sum(case when is_called and is_all_calls_ok and not is_successful_task then 1 else 0 end)
            as tool_success_answer_failed_count
    from pairs
    group by trace_date, model_name, route_name, prompt_version, tool_name, tool_version
),

keys as (
    select trace_date, model_name, route_name, prompt_version, tool_name, tool_version
    from call_measures
    union
    select trace_date, model_name, route_name, prompt_version, tool_name, tool_version
    from pair_measures
),

measured as (
    select
        {{ hash_key([
            'keys.trace_date', 'keys.tool_name', 'keys.tool_version', 'keys.model_name',
            'keys.route_name', 'keys.prompt_version',
        ]) }} as tool_segment_id,
        keys.trace_date,
        keys.tool_name,
        keys.tool_version,
        keys.model_name,
        keys.route_name,
        keys.prompt_version,
        segment_totals.segment_trace_count,
        segment_totals.segment_labelled_trace_count,
        coalesce(call_measures.call_count, 0) as call_count,
        coalesce(call_measures.calling_trace_count, 0) as calling_trace_count,
        {{ safe_divide('coalesce(call_measures.calling_trace_count, 0)', 'segment_totals.segment_trace_count') }}
            as call_rate,
        call_measures.duration_ms_mean,
        call_measures.duration_ms_p50,
        call_measures.duration_ms_p95,
        coalesce(call_measures.error_call_count, 0) as error_call_count,
        coalesce(call_measures.timeout_call_count, 0) as timeout_call_count,
        coalesce(call_measures.retried_call_count, 0) as retried_call_count,
        coalesce(call_measures.retries_sum, 0) as retries_sum,
        coalesce(call_measures.invalid_args_call_count, 0) as invalid_args_call_count,
        coalesce(call_measures.dependency_failure_call_count, 0) as dependency_failure_call_count,
        {{ safe_divide('call_measures.error_call_count', 'call_measures.call_count') }} as error_rate,
        {{ safe_divide('call_measures.timeout_call_count', 'call_measures.call_count') }} as timeout_rate,
        {{ safe_divide('call_measures.retried_call_count', 'call_measures.call_count') }} as retry_rate,
        {{ safe_divide('call_measures.invalid_args_call_count', 'call_measures.call_count') }}
            as invalid_args_rate,
        {{ safe_divide('call_measures.dependency_failure_call_count', 'call_measures.call_count') }}
            as dependency_failure_rate,
        coalesce(pair_measures.required_trace_count, 0) as required_trace_count,
        coalesce(pair_measures.required_called_count, 0) as required_called_count,
        coalesce(pair_measures.required_missing_count, 0) as required_missing_count,
        coalesce(pair_measures.called_labelled_count, 0) as called_labelled_count,
        coalesce(pair_measures.unnecessary_call_count, 0) as unnecessary_call_count,
        coalesce(pair_measures.tool_success_trace_count, 0) as tool_success_trace_count,
        coalesce(pair_measures.tool_success_answer_failed_count, 0) as tool_success_answer_failed_count,
        {{ safe_divide('pair_measures.unnecessary_call_count', 'pair_measures.called_labelled_count') }}
            as unnecessary_call_rate,
        {{ safe_divide('pair_measures.tool_success_answer_failed_count', 'pair_measures.tool_success_trace_count') }}
            as tool_success_answer_failed_rate
    from keys
    inner join segment_totals
        on keys.trace_date = segment_totals.trace_date
        and keys.model_name = segment_totals.model_name
        and keys.route_name = segment_totals.route_name
        and keys.prompt_version = segment_totals.prompt_version
    left join call_measures
        on keys.trace_date = call_measures.trace_date
        and keys.model_name = call_measures.model_name
        and keys.route_name = call_measures.route_name
        and keys.prompt_version = call_measures.prompt_version
        and keys.tool_name = call_measures.tool_name
        and keys.tool_version = call_measures.tool_version
    left join pair_measures
        on keys.trace_date = pair_measures.trace_date
        and keys.model_name = pair_measures.model_name
        and keys.route_name = pair_measures.route_name
        and keys.prompt_version = pair_measures.prompt_version
        and keys.tool_name = pair_measures.tool_name
        and keys.tool_version = pair_measures.tool_version
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
