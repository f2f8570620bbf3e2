with

landed as (
    select * from {{ source('lake', 'annotations') }}
),

deduplicated as (
    {{ latest_per_id('landed', 'annotation_id', 'label_time desc, correctness desc, failure_category, dt desc') }}
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
    from deduplicated
)

select * from final
