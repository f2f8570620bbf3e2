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
    Cost attribution: what a day of traffic cost, per model / provider / route / prompt version /
    tenant / task type / tool path / token budget bucket, and what it bought (successful tasks,
    thumbs-up, requests that did not escalate). A trace's whole cost (all its spans, failed
    traces included) is attributed to its request-level dimensions.
-#}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests')) }}
),

day_lineage as (
    {{ mart_day_lineage('requests') }}
),

dimensioned as (
    select
        trace_date,
        {{ none_if_null('model_name') }} as model_name,
        {{ none_if_null('model_provider') }} as model_provider,
        {{ none_if_null('route_name') }} as route_name,
        {{ none_if_null('prompt_version') }} as prompt_version,
        {{ none_if_null('tenant_id') }} as tenant_id,
        {{ none_if_null('task_type') }} as task_type,
        {{ none_if_null('tool_path') }} as tool_path,
        {{ none_if_null('token_budget_bucket') }} as token_budget_bucket,
        coalesce(cost_usd, 0) as cost_usd,
        case when is_successful_task then 1 else 0 end as is_success_int,
        case when has_thumbs_up then 1 else 0 end as has_thumbs_up_int,
        case when has_escalation then 1 else 0 end as has_escalation_int,
        case when has_unpriced_span then 1 else 0 end as has_unpriced_span_int,
        coalesce(input_tokens, 0) as input_tokens,
        coalesce(output_tokens, 0) as output_tokens
    from requests
),

aggregated as (
    select
        trace_date,
        model_name,
        model_provider,
        route_name,
        prompt_version,
        tenant_id,
        task_type,
        tool_path,
        token_budget_bucket,
        count(*) as request_count,
        sum(is_success_int) as successful_task_count,
        sum(has_thumbs_up_int) as thumbs_up_count,
        sum(has_escalation_int) as escalation_count,
        count(*) - sum(has_escalation_int) as non_escalated_count,
        sum(has_unpriced_span_int) as unpriced_request_count,
        {{ exact_sum('cost_usd') }} as cost_usd,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens
    from dimensioned
    group by
        trace_date,
        model_name,
        model_provider,
        route_name,
        prompt_version,
        tenant_id,
        task_type,
        tool_path,
        token_budget_bucket
),

measured as (
    select
        {{ hash_key([
            'trace_date', 'model_name', 'model_provider', 'route_name', 'prompt_version',
            'tenant_id', 'task_type', 'tool_path', 'token_budget_bucket',
        ]) }} as cost_segment_id,
        trace_date,
        model_name,
        model_provider,
        route_name,
        prompt_version,
        tenant_id,
        task_type,
        tool_path,
        token_budget_bucket,
        request_count,
        successful_task_count,
        thumbs_up_count,
        escalation_count,
        non_escalated_count,
        unpriced_request_count,
        cost_usd,
        input_tokens,
        output_tokens,
        {{ safe_divide('cost_usd', 'request_count') }} as cost_per_request_usd,
        {{ safe_divide('cost_usd', 'successful_task_count') }} as cost_per_successful_task_usd,
        {{ safe_divide('cost_usd', 'thumbs_up_count') }} as cost_per_thumbs_up_usd,
        {{ safe_divide('cost_usd', 'non_escalated_count') }} as cost_per_non_escalated_request_usd,
        {{ safe_divide('successful_task_count', 'request_count') }} as task_success_rate,
        {{ safe_divide('escalation_count', 'request_count') }} as escalation_rate
    from aggregated
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
