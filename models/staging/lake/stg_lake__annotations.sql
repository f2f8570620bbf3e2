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
        label_time,
        ingest_time
    from deduplicated
)

select * from final
