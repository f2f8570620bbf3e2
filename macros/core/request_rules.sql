{#-
    The request rules of fct_requests (docs/warehouse.md, "Rules the core implements"), one macro
    per rule, so that the model reads as: scope -> join the trace rollups -> derive -> flag.
    Each returns SQL text for fct_requests' CTEs or select list; nothing here is engine-specific
    (list functions go through macros/portable).
-#}

{% macro trace_rollup_columns() %}
    {#- Select items: what each trace rollup contributes to a request (aliases as in the joins). -#}
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
{%- endmacro %}


{% macro required_tools_by_rule_ctes() %}
    {#-
        CTEs `task_intents` and `required_by_rule`: the tools the `tool_requirements` rules ask
        for, per trace in scope (rules match the trace's task_type and intent; an empty intent
        matches any). Needs CTEs traces_in_scope, llm and tool_requirements before it.
    -#}
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
{%- endmacro %}


{% macro retrieval_judgement_flags() %}
    {#- Select items: was a relevant chunk retrieved / selected / included / reaching the model. -#}
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
        end as is_relevant_included
{%- endmacro %}


{% macro successful_task_rule() %}
    {#- The contract's success rule, as a boolean expression over a flagged request row. -#}
        coalesce(status = 'ok', false)
            and (final_status is null or final_status = 'success')
            and not coalesce(has_thumbs_down, false)
            and not coalesce(has_escalation, false)
            and not coalesce(has_task_abandoned, false)
            and (correctness is null or correctness >= 0.5)
{%- endmacro %}


{% macro token_budget_bucket() %}
    {#- The context budget (or the llm input tokens) in [low, high) buckets; unknown when neither. -#}
        case
            when coalesce(token_budget, input_tokens) is null then 'unknown'
            when coalesce(token_budget, input_tokens) < 2000 then '<2k'
            when coalesce(token_budget, input_tokens) < 4000 then '2k-4k'
            when coalesce(token_budget, input_tokens) < 8000 then '4k-8k'
            when coalesce(token_budget, input_tokens) < 16000 then '8k-16k'
            when coalesce(token_budget, input_tokens) < 32000 then '16k-32k'
            else '32k+'
        end
{%- endmacro %}


{% macro request_failure_tags() %}
    {#- The rule-based failure tags of a request, taxonomy codes where one fits. -#}
        {{ list_of_present([
            "case when is_retrieval_hit = false or coalesce(is_zero_result, false) then 'retrieval_miss' end",
            "case when is_required_tool_missing then 'missing_tool_call' end",
            "case when context_truncated_reported then 'context_truncation' end",
            "case when tool_error_count > 0 then 'tool_execution_failure' end",
            "case when is_citation_mismatch then 'citation_mismatch' end",
            "case when timeout_span_count > 0 then 'timeout_degradation' end",
            "case when has_parse_failure or has_json_schema_failure then 'format_parse' end",
            "case when is_guardrail_blocked then 'guardrail_block' end",
        ]) }}
{%- endmacro %}
