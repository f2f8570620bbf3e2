{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace that has a retrieval-family span (query_rewrite, embedding, retrieval,
    rerank, context_assembly): what was retrieved, reranked and assembled into the prompt.
    Chunk lists are the sorted distinct union over the trace's spans of that stage, NULL when
    the stage did not run. Versions are the smallest seen in the trace (one per trace in
    practice). Token counts are summed over context_assembly spans, the budget is their max.
-#}
{%- set families = ['query_rewrite', 'embedding', 'retrieval', 'rerank', 'context_assembly'] -%}

{%- set columns = [
    'trace_id', 'span_type', 'ingest_time', 'top_k_returned', 'top_k_requested', 'score_mean',
    'score_min', 'score_max', 'acl_filtered_count', 'retriever_type', 'index_version',
    'embedding_version', 'embedding_model', 'reranker_version', 'reranker_model',
    'strategy_version', 'system_prompt_version', 'policy_block_version', 'context_policy',
    'token_budget', 'tokens_system', 'tokens_history', 'tokens_context', 'tokens_tools',
    'tokens_user', 'truncated', 'excluded_chunks', 'chunk_ids', 'selected_chunk_ids',
    'included_chunk_ids',
] -%}
-- depends_on: {{ ref('base_lake__spans') }}
{{- stamps_ref() }}

with

spans as (
    {{ span_types_unioned(families, columns, where=(
        touched_spans_predicate(families)
    ) if is_incremental() else none) }}
),

per_trace as (
    select
        trace_id,
        cast(sum(case when span_type = 'retrieval' then 1 else 0 end) as bigint) as retrieval_span_count,
        cast(sum(case when span_type = 'rerank' then 1 else 0 end) as bigint) as rerank_span_count,
        cast(sum(case when span_type = 'context_assembly' then 1 else 0 end) as bigint) as context_assembly_span_count,
        cast(sum(case when span_type = 'retrieval' and top_k_returned = 0 then 1 else 0 end) as bigint)
            as retrieval_zero_result_span_count,
        cast(sum(case when span_type = 'retrieval' then top_k_returned end) as bigint) as top_k_returned,
        max(case when span_type = 'retrieval' then top_k_requested end) as top_k_requested,
        {{ exact_sum("case when span_type = 'retrieval' then score_mean end", 9) }} as retrieval_score_sum,
        count(case when span_type = 'retrieval' then score_mean end) as retrieval_score_count,
        min(case when span_type = 'retrieval' then score_min end) as retrieval_score_min,
        max(case when span_type = 'retrieval' then score_max end) as retrieval_score_max,
        cast(sum(case when span_type = 'retrieval' then acl_filtered_count end) as bigint) as acl_filtered_count,
        min(case when span_type = 'retrieval' then retriever_type end) as retriever_type,
        min(case when span_type = 'retrieval' then index_version end) as index_version,
        min(case when span_type = 'embedding' then embedding_version end) as embedding_version,
        min(case when span_type = 'embedding' then embedding_model end) as embedding_model,
        min(case when span_type = 'rerank' then reranker_version end) as reranker_version,
        min(case when span_type = 'rerank' then reranker_model end) as reranker_model,
        min(case when span_type = 'query_rewrite' then strategy_version end) as rewrite_strategy_version,
        min(case when span_type = 'context_assembly' then system_prompt_version end) as system_prompt_version,
        min(case when span_type = 'context_assembly' then policy_block_version end) as policy_block_version,
        min(case when span_type = 'context_assembly' then context_policy end) as context_policy,
        max(case when span_type = 'context_assembly' then token_budget end) as token_budget,
        cast(sum(case when span_type = 'context_assembly' then tokens_system end) as bigint) as tokens_system,
        cast(sum(case when span_type = 'context_assembly' then tokens_history end) as bigint) as tokens_history,
        cast(sum(case when span_type = 'context_assembly' then tokens_context end) as bigint) as tokens_context,
        cast(sum(case when span_type = 'context_assembly' then tokens_tools end) as bigint) as tokens_tools,
        cast(sum(case when span_type = 'context_assembly' then tokens_user end) as bigint) as tokens_user,
        max(case when span_type = 'context_assembly' and truncated then 1 else 0 end) = 1
            as is_context_truncated,
        cast(sum(case when span_type = 'context_assembly' then {{ list_length('excluded_chunks') }} end) as bigint)
            as excluded_chunk_count,
        {{ list_concat_agg("case when span_type = 'retrieval' then chunk_ids end") }} as retrieved_chunk_ids_all,
        {{ list_concat_agg("case when span_type = 'rerank' then selected_chunk_ids end") }} as selected_chunk_ids_all,
        {{ list_concat_agg("case when span_type = 'context_assembly' then included_chunk_ids end") }} as included_chunk_ids_all,
        count(case when span_type = 'retrieval' then chunk_ids end) as retrieval_lists,
        count(case when span_type = 'rerank' then selected_chunk_ids end) as rerank_lists,
        count(case when span_type = 'context_assembly' then included_chunk_ids end) as context_lists,
        max(ingest_time) as last_span_ingest_at
    from spans
    group by trace_id
),

final as (
    select
        trace_id,
        retrieval_span_count,
        rerank_span_count,
        context_assembly_span_count,
        retrieval_zero_result_span_count,
        case when retrieval_span_count > 0 then retrieval_zero_result_span_count > 0 end as is_zero_result,
        top_k_requested,
        top_k_returned,
        retrieval_score_sum,
        retrieval_score_count,
        retrieval_score_sum / nullif(retrieval_score_count, 0) as retrieval_score_mean,
        retrieval_score_min,
        retrieval_score_max,
        acl_filtered_count,
        retriever_type,
        index_version,
        embedding_version,
        embedding_model,
        reranker_version,
        reranker_model,
        rewrite_strategy_version,
        system_prompt_version,
        policy_block_version,
        context_policy,
        token_budget,
        tokens_system,
        tokens_history,
        tokens_context,
        tokens_tools,
        tokens_user,
        case when context_assembly_span_count > 0 then is_context_truncated end as is_context_truncated,
        excluded_chunk_count,
        case when retrieval_lists > 0 then {{ list_sorted_distinct('retrieved_chunk_ids_all') }} end
            as retrieved_chunk_ids,
        case when rerank_lists > 0 then {{ list_sorted_distinct('selected_chunk_ids_all') }} end
            as selected_chunk_ids,
        case when context_lists > 0 then {{ list_sorted_distinct('included_chunk_ids_all') }} end
            as included_chunk_ids,
        last_span_ingest_at
    from per_trace
)

select * from final
