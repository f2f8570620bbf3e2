{#-
    One row per trace that has user feedback: a flag per feedback type, counts, and the
    lineage `last_feedback_ingest_at`. A table rebuilt on every run (feedback is small; its
    staging view reads the whole landed feedback anyway).
-#}
{%- set flags = [
    'thumbs_up', 'thumbs_down', 'edit', 'regenerate', 'rephrase', 'copy', 'citation_click',
    'escalation', 'task_completed', 'task_abandoned', 'follow_up',
] -%}

with

feedback as (
    select * from {{ ref('stg_lake__feedback') }}
),

final as (
    select
        trace_id,
        {%- for flag in flags %}
        max(case when feedback_type = '{{ flag }}' then 1 else 0 end) = 1 as has_{{ flag }},
        {%- endfor %}
        count(*) as feedback_count,
        min(event_time) as first_feedback_at,
        max(ingest_time) as last_feedback_ingest_at
    from feedback
    group by trace_id
)

select * from final
