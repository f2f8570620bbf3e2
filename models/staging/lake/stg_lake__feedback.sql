with

landed_once as (
    select * from {{ ref('base_lake__feedback') }}
),

final as (
    select
        feedback_id,
        trace_id,
        request_id,
        conversation_id,
        tenant_id,
        user_id_hash,
        feedback_type,
        value,
        comment_redacted,
        source,
        event_time,
        ingest_time
    from landed_once
)

select * from final
