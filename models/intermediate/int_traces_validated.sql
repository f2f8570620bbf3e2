{{
    config(
        materialized='incremental',
        unique_key='trace_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    One row per trace with a postprocess span: the validators that ran (`validator_name=version`,
    sorted), citation checks, guardrail blocks and validator failures.
-#}

-- depends_on: {{ ref('base_lake__spans') }}
{{- stamps_ref() }}
with

spans as (
    select * from {{ ref('stg_lake__postprocess_spans') }}
    {%- if is_incremental() %}
    where {{ touched_spans_predicate(['postprocess']) }}
    {%- endif %}
),

per_trace as (
    select
        trace_id,
        count(*) as postprocess_span_count,
        {{ list_sorted_distinct(list_agg(
            "case when validator_name is not null then validator_name || '=' || coalesce(validator_version, 'unknown') end"
        )) }} as validator_versions,
        cast(sum(case when validator_name = 'citation_check' then 1 else 0 end) as bigint) as citation_check_count,
        cast(sum(case when validator_name = 'citation_check' then citations_total end) as bigint) as citations_total,
        cast(sum(case when validator_name = 'citation_check' then citations_valid end) as bigint) as citations_valid,
        max(case
            when validator_name = 'citation_check' and citations_valid < citations_total then 1 else 0
        end) = 1 as has_citation_mismatch,
        max(case when status = 'blocked' then 1 else 0 end) = 1 as is_guardrail_blocked,
        max(case when validator_name = 'json_schema' and passed = false then 1 else 0 end) = 1
            as has_json_schema_failure,
        cast(sum(case when passed = false then 1 else 0 end) as bigint) as validator_failure_count,
        cast(sum(repair_attempts) as bigint) as repair_attempts,
        max(case when fallback_triggered then 1 else 0 end) = 1 as has_fallback,
        max(ingest_time) as last_span_ingest_at
    from spans
    group by trace_id
),

final as (
    select
        trace_id,
        postprocess_span_count,
        validator_versions,
        citation_check_count > 0 as has_citation_check,
        citations_total,
        citations_valid,
        case when citation_check_count > 0 then has_citation_mismatch end as is_citation_mismatch,
        is_guardrail_blocked,
        has_json_schema_failure,
        validator_failure_count,
        repair_attempts,
        has_fallback,
        last_span_ingest_at
    from per_trace
)

select * from final
