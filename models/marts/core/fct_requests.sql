{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace (request): envelope, versions in force, tokens, cost, stage timings,
    tools, retrieval, validators, feedback, annotation, the contract's success rule and the
    warehouse's rule-based failure tags.

    Incremental (delete+insert on trace_id): a run rebuilds, from all their rows, the traces
    touched by a span, feedback or annotation row that the base tables wrote since this model's
    watermark on that source (macros/incremental/loaded.sql). Late feedback days after its
    trace rebuilds the trace. Each trace-grain input is semi-joined to the touched traces
    before the left joins: the joins build on a few hundred rows, not on every trace of the
    warehouse (with its chunk-id lists), and the engine can skip what the scans do not need.
-#}
{%- set touched_traces_only -%}
    {%- if is_incremental() %}
    where trace_id in (select trace_id from touched_traces)
    {%- endif %}
{%- endset -%}
{%- set stages = contract_enum('span_type') | reject('equalto', 'request') | list -%}
{{ loaded_base_refs() }}
{{ stamps_ref() }}

with

{% if is_incremental() %}
touched_traces as (
    {{ traces_loaded() }}
),

{% endif %}
traces as (
    select * from {{ ref('int_traces_enveloped') }}
),

stage_timings as (
    select * from {{ ref('int_traces_stage_timed') }}
    {{ touched_traces_only }}
),

retrieval as (
    select * from {{ ref('int_traces_retrieval_summarized') }}
    {{ touched_traces_only }}
),

llm as (
    select * from {{ ref('int_traces_llm_summarized') }}
    {{ touched_traces_only }}
),

tools as (
    select * from {{ ref('int_traces_tools_summarized') }}
    {{ touched_traces_only }}
),

validators as (
    select * from {{ ref('int_traces_validated') }}
    {{ touched_traces_only }}
),

feedback as (
    select * from {{ ref('int_traces_joined_to_feedback') }}
    {{ touched_traces_only }}
),

annotations as (
    select * from {{ ref('int_traces_joined_to_annotations') }}
    {{ touched_traces_only }}
),

tool_requirements as (
    select * from {{ ref('tool_requirements') }}
),

model_prices as (
    select * from {{ ref('model_prices') }}
),

traces_in_scope as (
    select * from traces
    {%- if is_incremental() %}
    where trace_id in (select trace_id from touched_traces)
    {%- endif %}
),

model_providers as (
    select
        model_name,
        min(model_provider) as model_provider
    from model_prices
    group by model_name
),

joined as (
    select
        traces_in_scope.*,
        {%- for stage in stages %}
        stage_timings.{{ stage }}_ms,
        stage_timings.{{ stage }}_offset_ms,
        {%- endfor %}
        {{ trace_rollup_columns() }}
    from traces_in_scope
    left join stage_timings on traces_in_scope.trace_id = stage_timings.trace_id
    left join retrieval on traces_in_scope.trace_id = retrieval.trace_id
    left join llm on traces_in_scope.trace_id = llm.trace_id
    left join tools on traces_in_scope.trace_id = tools.trace_id
    left join validators on traces_in_scope.trace_id = validators.trace_id
    left join feedback on traces_in_scope.trace_id = feedback.trace_id
    left join annotations on traces_in_scope.trace_id = annotations.trace_id
),

{{ required_tools_by_rule_ctes() }}

derived as (
    select
        joined.*,
        coalesce(joined.selected_model, joined.first_llm_model_name, joined.root_model_name) as primary_model_name,
        coalesce(joined.tools_called, {{ empty_list() }}) as tools_called_list,
        coalesce(
            joined.annotated_required_tools,
            required_by_rule.rule_required_tools,
            {{ empty_list() }}
        ) as required_tools_list,
        case
            when joined.annotated_required_tools is not null then 'annotation'
            when required_by_rule.rule_required_tools is not null then 'rule'
        end as required_tools_source,
        coalesce(joined.included_chunk_ids, joined.selected_chunk_ids, joined.retrieved_chunk_ids)
            as chunk_ids_reaching_model,
        joined.relevant_chunk_ids is not null
            and {{ list_length('joined.relevant_chunk_ids') }} > 0 as is_retrieval_judged
    from joined
    left join required_by_rule
        on joined.trace_id = required_by_rule.trace_id
),

flagged as (
    select
        derived.*,
        {{ list_length('required_tools_list') }} > 0 as needs_tool,
        case
            when {{ list_length('required_tools_list') }} > 0
                then not coalesce({{ lists_overlap('required_tools_list', 'tools_called_list') }}, false)
        end as is_required_tool_missing,
        {{ retrieval_judgement_flags() }},
        {{ successful_task_rule() }}
            as is_successful_task
    from derived
),

final as (
    select
        flagged.trace_id,
        request_id,
        conversation_id,
        session_id,
        user_id_hash,
        root_span_id,
        has_root,
        event_time,
        end_time,
        duration_ms,
        trace_date,
        tenant_id,
        environment,
        service_name,
        app_version,
        release_sha,
        task_type,
        intent,
        entrypoint,
        locale,
        route_name,
        primary_model_name as model_name,
        coalesce(
            case when first_llm_model_name = primary_model_name then first_llm_model_provider end,
            model_providers.model_provider,
            first_llm_model_provider
        ) as model_provider,
        routing_reason,
        prompt_version,
        retriever_version,
        index_version,
        embedding_version,
        reranker_version,
        route_policy_version,
        classifier_version,
        planner_version,
        system_prompt_version,
        coalesce(validator_versions, {{ empty_list() }}) as validator_versions,
        coalesce(tool_versions, {{ empty_list() }}) as tool_versions,
        cache_status,
        token_budget,
        {{ token_budget_bucket() }} as token_budget_bucket,
        coalesce(tool_path, 'none') as tool_path,
        experiment_ids,
        status,
        error_type,
        final_status,
        coalesce(status in ('error', 'timeout'), false) as is_error,
        span_count,
        error_span_count,
        timeout_span_count,
        coalesce(input_tokens, 0) as input_tokens,
        coalesce(output_tokens, 0) as output_tokens,
        coalesce(cached_tokens, 0) as cached_tokens,
        coalesce(reasoning_tokens, 0) as reasoning_tokens,
        tokens_system,
        tokens_history,
        tokens_context,
        tokens_tools,
        tokens_user,
        coalesce(context_truncated_reported, false) as is_context_truncated,
        excluded_chunk_count,
        cost_usd,
        coalesce(llm_cost_usd, 0.0) as llm_cost_usd,
        has_unpriced_span,
        coalesce(llm_call_count, 0) as llm_call_count,
        {%- for stage in stages %}
        {{ stage }}_ms,
        {{ stage }}_offset_ms,
        {%- endfor %}
        coalesce(tool_call_count, 0) as tool_call_count,
        coalesce(tool_error_count, 0) as tool_error_count,
        coalesce(tool_timeout_count, 0) as tool_timeout_count,
        coalesce(tool_call_count, 0) > 0 as has_tool_call,
        tools_called_list as tools_called,
        required_tools_list as required_tools,
        required_tools_source,
        needs_tool,
        is_required_tool_missing,
        {{ list_except('required_tools_list', 'tools_called_list') }} as missing_required_tools,
        coalesce(retrieval_span_count, 0) as retrieval_span_count,
        coalesce(retrieval_zero_result_span_count, 0) as retrieval_zero_result_span_count,
        top_k_requested,
        top_k_returned,
        coalesce(is_zero_result, false) as is_zero_result,
        retrieval_score_mean,
        retrieval_score_sum,
        coalesce(retrieval_score_count, 0) as retrieval_score_count,
        relevant_chunk_ids,
        is_retrieval_judged,
        is_relevant_retrieved,
        is_relevant_selected,
        is_relevant_included,
        is_retrieval_hit,
        coalesce(has_citation_check, false) as has_citation_check,
        citations_total,
        citations_valid,
        is_citation_mismatch,
        coalesce(is_guardrail_blocked, false) as is_guardrail_blocked,
        coalesce(has_parse_failure, false) or coalesce(has_json_schema_failure, false) as has_format_failure,
        coalesce(has_thumbs_up, false) as has_thumbs_up,
        coalesce(has_thumbs_down, false) as has_thumbs_down,
        coalesce(has_escalation, false) as has_escalation,
        coalesce(has_regenerate, false) as has_regenerate,
        coalesce(has_rephrase, false) as has_rephrase,
        coalesce(has_task_abandoned, false) as has_task_abandoned,
        coalesce(has_task_completed, false) as has_task_completed,
        coalesce(feedback_count, 0) as feedback_count,
        annotation_id is not null as is_annotated,
        correctness,
        groundedness,
        citation_quality,
        completeness,
        tool_use_correct,
        policy_compliant,
        failure_category,
        eval_dataset_id,
        is_successful_task,
        {{ request_failure_tags() }} as failure_tags,
        last_span_ingest_at,
        last_feedback_ingest_at,
        last_annotation_ingest_at,
        greatest(
            last_span_ingest_at,
            coalesce(last_feedback_ingest_at, last_span_ingest_at),
            coalesce(last_annotation_ingest_at, last_span_ingest_at)
        ) as last_ingest_at
    from flagged
    left join model_providers
        on flagged.primary_model_name = model_providers.model_name
)

select * from final
