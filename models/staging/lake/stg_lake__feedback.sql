with

landed as (
    select * from {{ source('lake', 'feedback') }}
),

deduplicated as (
    {{ latest_per_id('landed', 'feedback_id', 'event_time desc, feedback_type, value desc, dt desc') }}
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
    from deduplicated
)

select * from final
