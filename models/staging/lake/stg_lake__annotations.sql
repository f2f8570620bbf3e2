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
        label_time,
        ingest_time
    from landed_once
)

select * from final
