{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace that has a classify, model_routing, llm or tool_planning span: the
    decisions and the model passes. `intent` is the first label of the first classify span
    (that has labels); `first_llm_model_name` the model of the first llm pass that names one
    (by pass_index, then start time, then span_id);
    token counts are summed over llm spans.
-#}
{%- set families = ['classify', 'model_routing', 'llm', 'tool_planning'] -%}

{%- set columns = [
    'span_id', 'trace_id', 'span_type', 'event_time', 'ingest_time', 'model_name',
    'model_provider', 'input_tokens', 'output_tokens', 'cached_tokens', 'reasoning_tokens',
    'retry_count', 'parse_ok', 'moderation_flagged', 'finish_reason', 'pass_index', 'labels',
    'classifier_version', 'route_selected', 'selected_model', 'route_policy_version', 'reason',
    'planner_version', 'tool_selected',
] -%}
-- depends_on: {{ ref('base_lake__spans') }}
{{- stamps_ref() }}

with

typed_spans as (
    {{ span_types_unioned(families, columns, where=(
        touched_spans_predicate(families)
    ) if is_incremental() else none) }}
),

llm_cost as (
    select span_id, cost_usd
    from {{ ref('int_spans_priced') }}
    where span_type = 'llm'
    {%- if is_incremental() %}
        and trace_id in ({{ traces_touched_by_spans(ref('base_lake__spans'), span_types=families) }})
    {%- endif %}
),

spans as (
    select
        typed_spans.*,
        llm_cost.cost_usd
    from typed_spans
    left join llm_cost
        on typed_spans.span_id = llm_cost.span_id
),

per_trace as (
    select
        trace_id,
        cast(sum(case when span_type = 'llm' then 1 else 0 end) as bigint) as llm_call_count,
        cast(sum(case when span_type = 'llm' then input_tokens end) as bigint) as input_tokens,
        cast(sum(case when span_type = 'llm' then output_tokens end) as bigint) as output_tokens,
        cast(sum(case when span_type = 'llm' then cached_tokens end) as bigint) as cached_tokens,
        cast(sum(case when span_type = 'llm' then reasoning_tokens end) as bigint) as reasoning_tokens,
        cast(sum(case when span_type = 'llm' then retry_count end) as bigint) as llm_retry_count,
        {{ exact_sum("case when span_type = 'llm' then cost_usd end") }} as llm_cost_usd,
        max(case when span_type = 'llm' and parse_ok = false then 1 else 0 end) = 1 as has_parse_failure,
        max(case when span_type = 'llm' and moderation_flagged then 1 else 0 end) = 1 as has_moderation_flag,
        max(case when span_type = 'llm' and finish_reason = 'length' then 1 else 0 end) = 1 as has_length_finish,
        {{ first_value_by('model_name', ['pass_index', 'event_time', 'span_id'], "span_type = 'llm'") }}
            as first_llm_model_name,
        {{ first_value_by('model_provider', ['pass_index', 'event_time', 'span_id'], "span_type = 'llm'") }}
            as first_llm_model_provider,
        {{ first_value_by(list_first('labels'), ['event_time', 'span_id'], "span_type = 'classify'") }}
            as intent,
        min(case when span_type = 'classify' then classifier_version end) as classifier_version,
        min(case when span_type = 'classify' then route_selected end) as classifier_route_selected,
        min(case when span_type = 'model_routing' then selected_model end) as selected_model,
        min(case when span_type = 'model_routing' then route_policy_version end) as route_policy_version,
        min(case when span_type = 'model_routing' then reason end) as routing_reason,
        min(case when span_type = 'tool_planning' then planner_version end) as planner_version,
        min(case when span_type = 'tool_planning' then tool_selected end) as planned_tool,
        max(ingest_time) as last_span_ingest_at
    from spans
    group by trace_id
),

final as (
    select * from per_trace
)

select * from final
