{#-
    One row per trace that has a label or a promotion. Labels (`annotation_kind` label, the
    default): the latest one (by label_time, then ingest_time, then annotation_id) carries the
    labels. Promotions (`annotation_kind` promotion, from `tracehouse promote`): the latest one
    names the eval set and keeps its reason; `eval_dataset_id` is the latest promotion's, else
    the latest label's. Eval results of candidate runs are not labels of the production answer
    and are left out (see int_eval_results). `annotation_count` and the lineage
    `last_annotation_ingest_at` cover the trace's labels and promotions. Rebuilt on every run.
-#}

with

annotations as (
    select * from {{ ref('stg_lake__annotations') }}
),

reviewed as (
    select
        *,
        row_number() over (
            partition by trace_id, annotation_kind
            order by label_time desc, ingest_time desc, annotation_id desc
        ) as kind_rank,
        count(*) over (partition by trace_id) as annotation_count,
        max(ingest_time) over (partition by trace_id) as last_annotation_ingest_at
    from annotations
    where annotation_kind in ('label', 'promotion')
),

labels as (
    select * from reviewed
    where annotation_kind = 'label' and kind_rank = 1
),

promotions as (
    select * from reviewed
    where annotation_kind = 'promotion' and kind_rank = 1
),

traces as (
    select distinct
        trace_id,
        annotation_count,
        last_annotation_ingest_at
    from reviewed
),

final as (
    select
        traces.trace_id,
        labels.annotation_id,
        labels.annotator_id_hash,
        coalesce(promotions.eval_dataset_id, labels.eval_dataset_id) as eval_dataset_id,
        labels.label_time as labeled_at,
        labels.correctness,
        labels.groundedness,
        labels.citation_quality,
        labels.completeness,
        labels.tool_use_correct,
        labels.policy_compliant,
        labels.relevant_chunk_ids,
        labels.required_tools,
        labels.failure_category,
        labels.note_redacted as label_note,
        promotions.annotation_id as promotion_id,
        promotions.label_time as promoted_at,
        promotions.annotator_id_hash as promoted_by_hash,
        promotions.note_redacted as promotion_reason,
        traces.annotation_count,
        traces.last_annotation_ingest_at
    from traces
    left join labels
        on traces.trace_id = labels.trace_id
    left join promotions
        on traces.trace_id = promotions.trace_id
)

select * from final
