{#-
    Who read which tier-3 content, when and why: one row per (read, span, artifact), with the
    read's size and the reader's reads that day, so "who opened raw prompts of tenant X this
    week" or "reads without a ticket in the reason" are one query.
-#}

with

reads as (
    select * from {{ ref('stg_audit__content_access') }}
),

sized as (
    select
        access_id,
        count(artifact_id) as artifacts_in_access
    from reads
    group by access_id
),

final as (
    select
        {{ hash_key(['reads.access_id', 'reads.span_id', 'reads.artifact_id']) }} as content_access_id,
        reads.access_id,
        reads.accessed_at,
        {{ utc_date('reads.accessed_at') }} as accessed_date,
        reads.reader,
        reads.role,
        reads.trace_id,
        reads.span_id,
        reads.artifact_id,
        reads.artifact_kind,
        reads.reason,
        reads.outcome,
        reads.outcome = 'granted' as is_granted,
        sized.artifacts_in_access
    from reads
    inner join sized
        on reads.access_id = sized.access_id
)

select * from final
