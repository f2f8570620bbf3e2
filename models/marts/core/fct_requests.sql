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
    trace rebuilds the trace.
-#}
{%- set stages = contract_enum('span_type') | reject('equalto', 'request') | list -%}
{{ loaded_base_refs() }}

with

traces as (
    select * from {{ ref('int_traces_enveloped') }}
),

stage_timings as (
    select * from {{ ref('int_traces_stage_timed') }}
),

retrieval as (
    select * from {{ ref('int_traces_retrieval_summarized') }}
),

llm as (
    select * from {{ ref('int_traces_llm_summarized') }}
),

tools as (
    select * from {{ ref('int_traces_tools_summarized') }}
),

validators as (
    select * from {{ ref('int_traces_validated') }}
),

feedback as (
    select * from {{ ref('int_traces_joined_to_feedback') }}
),

annotations as (
    select * from {{ ref('int_traces_joined_to_annotations') }}
),

tool_requirements as (
    select * from {{ ref('tool_requirements') }}
),

model_prices as (
    select * from {{ ref('model_prices') }}
),

{% if is_incremental() %}
touched_traces as (
    {{ traces_loaded() }}
),

{% endif %}
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
        retrieval.retrieval_span_count,
        retrieval.retrieval_zero_result_span_count,
        retrieval.is_zero_result,
        retrieval.top_k_requested,
        retrieval.top_k_returned,
        retrieval.retrieval_score_sum,
        retrieval.retrieval_score_count,
        retrieval.retrieval_score_mean,
        retrieval.retriever_type,
        retrieval.index_version,
        retrieval.embedding_version,
        retrieval.reranker_version,
        retrieval.system_prompt_version,
        retrieval.token_budget,
        retrieval.tokens_system,
        retrieval.tokens_history,
        retrieval.tokens_context,
        retrieval.tokens_tools,
        retrieval.tokens_user,
        retrieval.is_context_truncated as context_truncated_reported,
        retrieval.excluded_chunk_count,
        retrieval.retrieved_chunk_ids,
        retrieval.selected_chunk_ids,
        retrieval.included_chunk_ids,
        llm.llm_call_count,
        llm.input_tokens,
        llm.output_tokens,
        llm.cached_tokens,
        llm.reasoning_tokens,
        llm.llm_cost_usd,
        llm.has_parse_failure,
        llm.first_llm_model_name,
        llm.first_llm_model_provider,
        llm.intent,
        llm.classifier_version,
        llm.selected_model,
        llm.route_policy_version,
        llm.routing_reason,
        llm.planner_version,
        tools.tool_call_count,
        tools.tool_error_count,
        tools.tool_timeout_count,
        tools.tools_called,
        tools.tool_path,
        tools.tool_versions,
        validators.validator_versions,
        validators.has_citation_check,
        validators.citations_total,
        validators.citations_valid,
        validators.is_citation_mismatch,
        validators.is_guardrail_blocked,
        validators.has_json_schema_failure,
        feedback.has_thumbs_up,
        feedback.has_thumbs_down,
        feedback.has_escalation,
        feedback.has_regenerate,
        feedback.has_rephrase,
        feedback.has_task_abandoned,
        feedback.has_task_completed,
        feedback.feedback_count,
        feedback.last_feedback_ingest_at,
        annotations.annotation_id,
        annotations.correctness,
        annotations.groundedness,
        annotations.citation_quality,
        annotations.completeness,
        annotations.tool_use_correct,
        annotations.policy_compliant,
        annotations.relevant_chunk_ids,
        annotations.required_tools as annotated_required_tools,
        annotations.failure_category,
        annotations.eval_dataset_id,
        annotations.last_annotation_ingest_at
    from traces_in_scope
    left join stage_timings on traces_in_scope.trace_id = stage_timings.trace_id
    left join retrieval on traces_in_scope.trace_id = retrieval.trace_id
    left join llm on traces_in_scope.trace_id = llm.trace_id
    left join tools on traces_in_scope.trace_id = tools.trace_id
    left join validators on traces_in_scope.trace_id = validators.trace_id
    left join feedback on traces_in_scope.trace_id = feedback.trace_id
    left join annotations on traces_in_scope.trace_id = annotations.trace_id
),

task_intents as (
    select
        traces_in_scope.trace_id,
        traces_in_scope.task_type,
        llm.intent
    from traces_in_scope
    left join llm on traces_in_scope.trace_id = llm.trace_id
),

required_by_rule as (
    select
        task_intents.trace_id,
        {{ list_sorted_distinct(list_agg('tool_requirements.tool_name')) }}
            as rule_required_tools
    from task_intents
    inner join tool_requirements
        on task_intents.task_type = tool_requirements.task_type
        and (
            tool_requirements.intent is null
            or tool_requirements.intent = ''
            or tool_requirements.intent = task_intents.intent
        )
    group by task_intents.trace_id
),

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
        case
            when is_retrieval_judged
                then coalesce({{ lists_overlap('relevant_chunk_ids', 'chunk_ids_reaching_model') }}, false)
        end as is_retrieval_hit,
        case
            when is_retrieval_judged and retrieved_chunk_ids is not null
                then {{ lists_overlap('relevant_chunk_ids', 'retrieved_chunk_ids') }}
        end as is_relevant_retrieved,
        case
            when is_retrieval_judged and selected_chunk_ids is not null
                then {{ lists_overlap('relevant_chunk_ids', 'selected_chunk_ids') }}
        end as is_relevant_selected,
        case
            when is_retrieval_judged and included_chunk_ids is not null
                then {{ lists_overlap('relevant_chunk_ids', 'included_chunk_ids') }}
        end as is_relevant_included,
        coalesce(status = 'ok', false)
            and (final_status is null or final_status = 'success')
            and not coalesce(has_thumbs_down, false)
            and not coalesce(has_escalation, false)
            and not coalesce(has_task_abandoned, false)
            and (correctness is null or correctness >= 0.5)
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
        case
            when coalesce(token_budget, input_tokens) is null then 'unknown'
            when coalesce(token_budget, input_tokens) < 2000 then '<2k'
            when coalesce(token_budget, input_tokens) < 4000 then '2k-4k'
            when coalesce(token_budget, input_tokens) < 8000 then '4k-8k'
            when coalesce(token_budget, input_tokens) < 16000 then '8k-16k'
            when coalesce(token_budget, input_tokens) < 32000 then '16k-32k'
            else '32k+'
        end as token_budget_bucket,
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
        {{ list_of_present([
            "case when is_retrieval_hit = false or coalesce(is_zero_result, false) then 'retrieval_miss' end",
            "case when is_required_tool_missing then 'missing_tool_call' end",
            "case when context_truncated_reported then 'context_truncation' end",
            "case when tool_error_count > 0 then 'tool_execution_failure' end",
            "case when is_citation_mismatch then 'citation_mismatch' end",
            "case when timeout_span_count > 0 then 'timeout_degradation' end",
            "case when has_parse_failure or has_json_schema_failure then 'format_parse' end",
            "case when is_guardrail_blocked then 'guardrail_block' end",
        ]) }} as failure_tags,
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
