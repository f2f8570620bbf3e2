{#-
    Traces where a judged-relevant chunk was retrieved but dropped before the prompt.

    One row per (trace, relevant chunk) where the chunk was in a retrieval span's chunk_ids but
    never reached the model: dropped by the reranker (not in selected_chunk_ids) or at context
    assembly (not in included_chunk_ids; excluded_reason says why when the span reported it:
    budget, dedupe, relevance_threshold, policy). is_trace_hit tells whether another relevant
    chunk still made it. Judged traces only (annotation relevant_chunk_ids).

    Run:
        dbt compile --select relevant_chunks_dropped_before_prompt \
            --vars '{start_date: "2026-01-01", end_date: "2026-01-31"}'
        then run target/compiled/tracehouse/analyses/relevant_chunks_dropped_before_prompt.sql
        against the warehouse. Dates are optional (default: every day).
-#}

{%- set start_date = var('start_date', '') %}
{%- set end_date = var('end_date', '') %}

with

requests as (
    select * from {{ ref('fct_requests') }}
),

spans as (
    select * from {{ ref('fct_spans') }}
),

judged as (
    select *
    from requests
    where is_retrieval_judged
        and is_relevant_retrieved
        {%- if start_date %}
        and trace_date >= cast('{{ start_date }}' as date)
        {%- endif %}
        {%- if end_date %}
        and trace_date <= cast('{{ end_date }}' as date)
        {%- endif %}
),

judged_spans as (
    select spans.*
    from spans
    inner join judged
        on spans.trace_id = judged.trace_id
),

relevant_chunks as (
    select distinct
        judged.trace_id,
        relevant.value as chunk_id
    from judged
    {{ unnest_join('judged.relevant_chunk_ids', 'relevant') }}
),

retrieved as (
    select distinct
        judged_spans.trace_id,
        chunk.value as chunk_id
    from judged_spans
    {{ unnest_join('judged_spans.chunk_ids', 'chunk') }}
    where judged_spans.span_type = 'retrieval'
),

selected as (
    select distinct
        judged_spans.trace_id,
        chunk.value as chunk_id
    from judged_spans
    {{ unnest_join('judged_spans.selected_chunk_ids', 'chunk') }}
    where judged_spans.span_type = 'rerank'
),

included as (
    select distinct
        judged_spans.trace_id,
        chunk.value as chunk_id
    from judged_spans
    {{ unnest_join('judged_spans.included_chunk_ids', 'chunk') }}
    where judged_spans.span_type = 'context_assembly'
),

excluded as (
    select
        judged_spans.trace_id,
        chunk.value.chunk_id as chunk_id,
        min(chunk.value.reason) as excluded_reason
    from judged_spans
    {{ unnest_join('judged_spans.excluded_chunks', 'chunk') }}
    where judged_spans.span_type = 'context_assembly'
    group by judged_spans.trace_id, chunk.value.chunk_id
),

stages_run as (
    select
        trace_id,
        max(case when span_type = 'rerank' then 1 else 0 end) = 1 as has_rerank,
        max(case when span_type = 'context_assembly' then 1 else 0 end) = 1 as has_context_assembly
    from judged_spans
    group by trace_id
),

relevant_retrieved as (
    select
        relevant_chunks.trace_id,
        relevant_chunks.chunk_id,
        stages_run.has_rerank,
        stages_run.has_context_assembly,
        selected.chunk_id is not null as is_selected,
        included.chunk_id is not null as is_included,
        excluded.excluded_reason
    from relevant_chunks
    inner join retrieved
        on relevant_chunks.trace_id = retrieved.trace_id
        and relevant_chunks.chunk_id = retrieved.chunk_id
    inner join stages_run
        on relevant_chunks.trace_id = stages_run.trace_id
    left join selected
        on relevant_chunks.trace_id = selected.trace_id
        and relevant_chunks.chunk_id = selected.chunk_id
    left join included
        on relevant_chunks.trace_id = included.trace_id
        and relevant_chunks.chunk_id = included.chunk_id
    left join excluded
        on relevant_chunks.trace_id = excluded.trace_id
        and relevant_chunks.chunk_id = excluded.chunk_id
),

dropped as (
    select
        *,
        case
            when has_rerank and not is_selected then 'rerank'
            else 'context_assembly'
        end as dropped_at
    from relevant_retrieved
    where (has_rerank and not is_selected)
        or (has_context_assembly and not is_included)
),

final as (
    select
        judged.trace_date,
        dropped.trace_id,
        dropped.chunk_id,
        dropped.dropped_at,
        dropped.excluded_reason,
        coalesce(judged.is_retrieval_hit, false) as is_trace_hit,
        judged.task_type,
        judged.route_name,
        judged.prompt_version,
        judged.retriever_version,
        judged.index_version,
        judged.reranker_version,
        judged.token_budget,
        judged.is_context_truncated,
        judged.correctness,
        judged.groundedness,
        judged.failure_category,
        judged.has_thumbs_down,
        judged.is_successful_task
    from dropped
    inner join judged
        on dropped.trace_id = judged.trace_id
)

select * from final
order by trace_date desc, trace_id, chunk_id
