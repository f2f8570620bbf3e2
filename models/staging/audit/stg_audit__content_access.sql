with

logged as (
    select * from {{ source('audit', 'content_access') }}
),

final as (
    select
        access_id,
        accessed_at,
        reader,
        role,
        trace_id,
        span_id,
        artifact_id,
        artifact_kind,
        reason,
        outcome
    from logged
)

select * from final
