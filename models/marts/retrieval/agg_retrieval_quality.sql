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
    Retrieval quality per day, retriever / index / reranker version and task type: judged hit
    rate at the three points a relevant chunk must pass (retrieved, selected by the reranker,
    included in the prompt), the retrieval score distribution, zero / low result and ACL-filter
    rates, reranker displacement, and citation coverage and correctness.
    Trace-level measures count traces that retrieved or were judged; span-level measures count
    retrieval / rerank spans. Every rate has its numerator and denominator as columns.
-#}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests')) }}
),

day_lineage as (
    {{ mart_day_lineage('requests') }}
),

retrieval_spans as (
    {#- fct_spans' retrieval rows (with their trace's day), not the wide view -#}
    select
        typed_spans.*,
        traces.trace_date
    from {{ ref('stg_lake__retrieval_spans') }} as typed_spans
    inner join {{ ref('int_traces_enveloped') }} as traces
        on typed_spans.trace_id = traces.trace_id
    where traces.trace_date in (select trace_date from day_lineage)
        and {{ mart_span_floor_condition('typed_spans.event_time') }}
),

rerank_spans as (
    {#- fct_spans' rerank rows (with their trace's day), not the wide view -#}
    select
        typed_spans.*,
        traces.trace_date
    from {{ ref('stg_lake__rerank_spans') }} as typed_spans
    inner join {{ ref('int_traces_enveloped') }} as traces
        on typed_spans.trace_id = traces.trace_id
    where traces.trace_date in (select trace_date from day_lineage)
        and {{ mart_span_floor_condition('typed_spans.event_time') }}
),

retrieval_requests as (
    select
        trace_id,
        trace_date,
        {{ none_if_null('retriever_version') }} as retriever_version,
        {{ none_if_null('index_version') }} as index_version,
        {{ none_if_null('reranker_version') }} as reranker_version,
        {{ none_if_null('task_type') }} as task_type,
        coalesce(is_retrieval_judged, false) as is_judged,
        {#- the three points; a stage that did not run passes its input through -#}
        coalesce(is_relevant_retrieved, false) as is_relevant_retrieved,
        coalesce(is_relevant_selected, is_relevant_retrieved, false) as is_relevant_selected,
        coalesce(is_retrieval_hit, false) as is_relevant_included,
        coalesce(has_citation_check, false) as has_citation_check,
        coalesce(citations_total, 0) as citations_total,
        coalesce(citations_valid, 0) as citations_valid,
        coalesce(is_citation_mismatch, false) as is_citation_mismatch
    from requests
    where coalesce(retrieval_span_count, 0) > 0
        or coalesce(is_retrieval_judged, false)
),

trace_measures as (
    select
        trace_date,
        retriever_version,
        index_version,
        reranker_version,
        task_type,
        count(*) as trace_count,
        sum(case when is_judged then 1 else 0 end) as judged_trace_count,
        sum(case when is_judged and is_relevant_retrieved then 1 else 0 end) as hit_retrieved_count,
        sum(case when is_judged and is_relevant_selected then 1 else 0 end) as hit_selected_count,
        sum(case when is_judged and is_relevant_included then 1 else 0 end) as hit_included_count,
        sum(
            case when is_judged and is_relevant_retrieved and not is_relevant_included then 1 else 0 end
        ) as retrieved_not_included_count,
        sum(case when has_citation_check then 1 else 0 end) as citation_checked_count,
        sum(case when has_citation_check and citations_total > 0 then 1 else 0 end)
            as cited_trace_count,
        sum(case when is_citation_mismatch then 1 else 0 end) as citation_mismatch_count,
        sum(case when has_citation_check then citations_total else 0 end) as citations_total,
        sum(case when has_citation_check then citations_valid else 0 end) as citations_valid
    from retrieval_requests
    group by trace_date, retriever_version, index_version, reranker_version, task_type
),

retrieval_span_rows as (
    select
        retrieval_requests.trace_date,
        retrieval_requests.retriever_version,
        retrieval_requests.index_version,
        retrieval_requests.reranker_version,
        retrieval_requests.task_type,
        retrieval_spans.score_mean,
        retrieval_spans.top_k_returned,
        retrieval_spans.top_k_requested,
        retrieval_spans.acl_filtered_count
    from retrieval_spans
    inner join retrieval_requests
        on retrieval_spans.trace_id = retrieval_requests.trace_id
),

span_measures as (
    select
        trace_date,
        retriever_version,
        index_version,
        reranker_version,
        task_type,
        count(*) as retrieval_span_count,
        count(score_mean) as score_mean_n,
        {{ exact_sum('score_mean', 9) }} as score_mean_sum,
        {{ exact_mean('score_mean', 9) }} as score_mean_avg,
        {{ percentile('score_mean', 0.1) }} as score_mean_p10,
        {{ percentile('score_mean', 0.5) }} as score_mean_p50,
        {{ percentile('score_mean', 0.9) }} as score_mean_p90,
        count(top_k_returned) as result_count_known_spans,
        sum(case when top_k_returned = 0 then 1 else 0 end) as zero_result_span_count,
        {#- low: something came back, but less than half of what was asked for -#}
        sum(case when top_k_requested > 0 and top_k_returned is not null then 1 else 0 end)
            as low_result_known_spans,
        sum(
            case
                when top_k_requested > 0 and top_k_returned > 0
                    and top_k_returned * 2 < top_k_requested then 1
                else 0
            end
        ) as low_result_span_count,
        count(acl_filtered_count) as acl_known_spans,
        sum(case when acl_filtered_count > 0 then 1 else 0 end) as acl_filtered_span_count,
        sum(coalesce(acl_filtered_count, 0)) as acl_filtered_chunks,
        sum(coalesce(top_k_returned, 0)) as returned_chunks
    from retrieval_span_rows
    group by trace_date, retriever_version, index_version, reranker_version, task_type
),

rerank_span_rows as (
    select
        retrieval_requests.trace_date,
        retrieval_requests.retriever_version,
        retrieval_requests.index_version,
        retrieval_requests.reranker_version,
        retrieval_requests.task_type,
        rerank_spans.changed_rank_positions,
        rerank_spans.score_delta_mean
    from rerank_spans
    inner join retrieval_requests
        on rerank_spans.trace_id = retrieval_requests.trace_id
),

rerank_measures as (
    select
        trace_date,
        retriever_version,
        index_version,
        reranker_version,
        task_type,
        count(*) as rerank_span_count,
        count(changed_rank_positions) as displacement_n,
        sum(changed_rank_positions) as changed_rank_positions_sum,
        sum(case when changed_rank_positions > 0 then 1 else 0 end) as displaced_span_count,
        count(score_delta_mean) as score_delta_n,
        {{ exact_sum('score_delta_mean', 9) }} as score_delta_sum
    from rerank_span_rows
    group by trace_date, retriever_version, index_version, reranker_version, task_type
),

measured as (
    select
        {{ hash_key([
            'trace_measures.trace_date', 'trace_measures.retriever_version',
            'trace_measures.index_version', 'trace_measures.reranker_version',
            'trace_measures.task_type',
        ]) }} as retrieval_segment_id,
        trace_measures.trace_date,
        trace_measures.retriever_version,
        trace_measures.index_version,
        trace_measures.reranker_version,
        trace_measures.task_type,
        trace_measures.trace_count,
        trace_measures.judged_trace_count,
        trace_measures.hit_retrieved_count,
        trace_measures.hit_selected_count,
        trace_measures.hit_included_count,
        trace_measures.retrieved_not_included_count,
        {{ safe_divide('trace_measures.hit_retrieved_count', 'trace_measures.judged_trace_count') }}
            as hit_rate_retrieved,
        {{ safe_divide('trace_measures.hit_selected_count', 'trace_measures.judged_trace_count') }}
            as hit_rate_selected,
        {{ safe_divide('trace_measures.hit_included_count', 'trace_measures.judged_trace_count') }}
            as hit_rate_included,
        coalesce(span_measures.retrieval_span_count, 0) as retrieval_span_count,
        coalesce(span_measures.score_mean_n, 0) as score_mean_n,
        span_measures.score_mean_sum,
        span_measures.score_mean_avg,
        span_measures.score_mean_p10,
        span_measures.score_mean_p50,
        span_measures.score_mean_p90,
        coalesce(span_measures.result_count_known_spans, 0) as result_count_known_spans,
        coalesce(span_measures.zero_result_span_count, 0) as zero_result_span_count,
        {{ safe_divide('span_measures.zero_result_span_count', 'span_measures.result_count_known_spans') }}
            as zero_result_rate,
        coalesce(span_measures.low_result_known_spans, 0) as low_result_known_spans,
        coalesce(span_measures.low_result_span_count, 0) as low_result_span_count,
        {{ safe_divide('span_measures.low_result_span_count', 'span_measures.low_result_known_spans') }}
            as low_result_rate,
        coalesce(span_measures.acl_known_spans, 0) as acl_known_spans,
        coalesce(span_measures.acl_filtered_span_count, 0) as acl_filtered_span_count,
        {{ safe_divide('span_measures.acl_filtered_span_count', 'span_measures.acl_known_spans') }}
            as acl_filtered_rate,
        coalesce(span_measures.acl_filtered_chunks, 0) as acl_filtered_chunks,
        coalesce(span_measures.returned_chunks, 0) as returned_chunks,
        coalesce(rerank_measures.rerank_span_count, 0) as rerank_span_count,
        coalesce(rerank_measures.displacement_n, 0) as displacement_n,
        coalesce(rerank_measures.changed_rank_positions_sum, 0) as changed_rank_positions_sum,
        coalesce(rerank_measures.displaced_span_count, 0) as displaced_span_count,
        {{ safe_divide('rerank_measures.changed_rank_positions_sum', 'rerank_measures.displacement_n') }}
            as changed_rank_positions_mean,
        coalesce(rerank_measures.score_delta_n, 0) as score_delta_n,
        rerank_measures.score_delta_sum,
        {{ safe_divide('rerank_measures.score_delta_sum', 'rerank_measures.score_delta_n') }}
            as score_delta_mean,
        trace_measures.citation_checked_count,
        trace_measures.cited_trace_count,
        trace_measures.citation_mismatch_count,
        trace_measures.citations_total,
        trace_measures.citations_valid,
        {{ safe_divide('trace_measures.cited_trace_count', 'trace_measures.citation_checked_count') }}
            as citation_coverage,
        {{ safe_divide('trace_measures.citations_valid', 'trace_measures.citations_total') }}
            as citation_correctness
    from trace_measures
    left join span_measures
        on trace_measures.trace_date = span_measures.trace_date
        and trace_measures.retriever_version = span_measures.retriever_version
        and trace_measures.index_version = span_measures.index_version
        and trace_measures.reranker_version = span_measures.reranker_version
        and trace_measures.task_type = span_measures.task_type
    left join rerank_measures
        on trace_measures.trace_date = rerank_measures.trace_date
        and trace_measures.retriever_version = rerank_measures.retriever_version
        and trace_measures.index_version = rerank_measures.index_version
        and trace_measures.reranker_version = rerank_measures.reranker_version
        and trace_measures.task_type = rerank_measures.task_type
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
