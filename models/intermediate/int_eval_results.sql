{#-
    One row per candidate eval run and example (trace): the latest `eval_result` annotation that
    `tracehouse eval import` landed for them (by label_time, then ingest_time, then
    annotation_id). An eval result is what a candidate (other prompt, model, retriever, ...)
    did when it replayed the trace; it is never a label of the production answer.
-#}

with

annotations as (
    select * from {{ ref('stg_lake__annotations') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by eval_run_id, trace_id
            order by label_time desc, ingest_time desc, annotation_id desc
        ) as result_rank
    from annotations
    where annotation_kind = 'eval_result'
        and eval_run_id is not null
),

final as (
    select
        {{ hash_key(['eval_run_id', 'trace_id']) }} as eval_result_id,
        eval_run_id,
        trace_id,
        annotation_id,
        eval_dataset_id,
        candidate_versions,
        label_time as evaluated_at,
        correctness,
        groundedness,
        citation_quality,
        completeness,
        tool_use_correct,
        policy_compliant,
        retrieval_hit,
        cost_usd,
        latency_ms,
        failure_category,
        note_redacted,
        ingest_time
    from ranked
    where result_rank = 1
)

select * from final
