{{ config(meta={'test_slice': 'span_id'}) }}
with

spans as (
    select * from {{ ref('base_lake__spans') }}
),

final as (
    select
        span_id,
        trace_id,
        parent_span_id,
        span_type,
        operation_name,
        status,
        event_time,
        end_time,
        duration_ms,
        ingest_time,
        request_id,
        conversation_id,
        session_id,
        user_id_hash,
        tenant_id,
        environment,
        service_name,
        app_version,
        release_sha,
        error_type,
        error_message_redacted,
        task_type,
        route_name,
        model_name,
        model_provider,
        prompt_version,
        retriever_version,
        tool_name,
        cache_status,
        input_tokens,
        output_tokens,
        cost_usd_estimate,
        experiment_ids,
        privacy_tags,
        artifact_refs,
        attributes,
        parent_span_id is null as is_root
    from spans
)

select * from final
