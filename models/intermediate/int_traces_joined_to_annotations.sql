{#-
    One row per annotated trace: its latest annotation (by label_time, then ingest_time, then
    annotation_id) carries the labels; `annotation_count` and the lineage
    `last_annotation_ingest_at` cover all of the trace's annotations. Rebuilt on every run.
-#}

with

annotations as (
    select * from {{ ref('stg_lake__annotations') }}
),

ranked as (
    select
        *,
        row_number() over (
            partition by trace_id
            order by label_time desc, ingest_time desc, annotation_id desc
        ) as label_rank,
        count(*) over (partition by trace_id) as annotation_count,
        max(ingest_time) over (partition by trace_id) as last_annotation_ingest_at
    from annotations
),

final as (
    select
        trace_id,
        annotation_id,
        annotator_id_hash,
        eval_dataset_id,
        label_time as labeled_at,
        correctness,
        groundedness,
        citation_quality,
        completeness,
        tool_use_correct,
        policy_compliant,
        relevant_chunk_ids,
        required_tools,
        failure_category,
        annotation_count,
        last_annotation_ingest_at
    from ranked
    where label_rank = 1
)

select * from final
