with

landed_once as (
    select * from {{ ref('base_lake__annotations') }}
),

final as (
    select
        annotation_id,
        trace_id,
        annotator_id_hash,
        eval_dataset_id,
        correctness,
        groundedness,
        citation_quality,
        completeness,
        tool_use_correct,
        policy_compliant,
        relevant_chunk_ids,
        required_tools,
        failure_category,
        coalesce(annotation_kind, 'label') as annotation_kind,
        note_redacted,
        eval_run_id,
        candidate_versions,
        retrieval_hit,
        cost_usd,
        latency_ms,
        label_time,
        ingest_time
    from landed_once
)

select * from final
