{#- lineage is spans-only: a warehouse built before drops the old lineage columns once -#}
{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        pre_hook=["{{ drop_retired_columns(['last_feedback_ingest_at', 'last_annotation_ingest_at', 'last_ingest_at']) }}"],
        post_hook=["{{ delete_vanished_days() }}"],
    )
}}
{#-
    Context assembly per day and prompt version: how much of the token budget the prompt uses,
    tokens by section (system, history, context, tools, user), how often the context was
    truncated, and how many chunks were excluded and why (budget, dedupe, relevance_threshold,
    policy; anything else counts as 'other'). Counts traces with a context_assembly span.
    Incremental on the days whose spans a run touched (macros/portable/marts.sql): it reads no
    feedback or annotation, so late feedback or annotations do not rebuild a day.
-#}

{%- set sections = ['system', 'history', 'context', 'tools', 'user'] %}
{%- set reasons = ['budget', 'dedupe', 'relevance_threshold', 'policy'] %}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests'), ['spans']) }}
),

day_lineage as (
    {{ mart_day_lineage('requests', ['spans']) }}
),

context_assembly_spans as (
    {#- fct_spans' context_assembly rows (with their trace's day), not the wide view -#}
    select
        typed_spans.*,
        traces.trace_date
    from {{ ref('stg_lake__context_assembly_spans') }} as typed_spans
    inner join {{ ref('int_traces_enveloped') }} as traces
        on typed_spans.trace_id = traces.trace_id
    where traces.trace_date in (select trace_date from day_lineage)
        and {{ mart_span_floor_condition('typed_spans.event_time') }}
),

assembled_traces as (
    select distinct trace_id from context_assembly_spans
),

assembled_requests as (
    select
        requests.trace_id,
        requests.trace_date,
        {{ none_if_null('requests.prompt_version') }} as prompt_version,
        requests.token_budget,
        {%- for section in sections %}
        coalesce(requests.tokens_{{ section }}, 0) as tokens_{{ section }},
        {%- endfor %}
        (
            {%- for section in sections %}
            coalesce(requests.tokens_{{ section }}, 0){{ " +" if not loop.last }}
            {%- endfor %}
        ) as tokens_total,
        coalesce(requests.is_context_truncated, false) as is_context_truncated
    from requests
    inner join assembled_traces
        on requests.trace_id = assembled_traces.trace_id
),

budget_use as (
    select
        *,
        case when token_budget > 0 then cast(tokens_total as double) / token_budget end
            as budget_use_ratio
    from assembled_requests
),

request_measures as (
    select
        trace_date,
        prompt_version,
        count(*) as trace_count,
        count(budget_use_ratio) as budget_known_count,
        sum(case when budget_use_ratio is not null then tokens_total else 0 end) as budgeted_tokens_total,
        sum(case when budget_use_ratio is not null then token_budget else 0 end) as token_budget_total,
        {{ exact_mean('budget_use_ratio') }} as budget_use_mean,
        {{ percentile('budget_use_ratio', 0.95) }} as budget_use_p95,
        sum(case when budget_use_ratio > 1 then 1 else 0 end) as over_budget_count,
        sum(tokens_total) as tokens_total_sum,
        {%- for section in sections %}
        sum(tokens_{{ section }}) as tokens_{{ section }}_sum,
        avg(tokens_{{ section }}) as tokens_{{ section }}_mean,
        {{ percentile('tokens_' ~ section, 0.95) }} as tokens_{{ section }}_p95,
        {%- endfor %}
        sum(case when is_context_truncated then 1 else 0 end) as truncated_count
    from budget_use
    group by trace_date, prompt_version
),

excluded_chunks as (
    select
        assembled_requests.trace_date,
        assembled_requests.prompt_version,
        excluded.value.reason as reason
    from context_assembly_spans
    {{ unnest_join('context_assembly_spans.excluded_chunks', 'excluded') }}
    inner join assembled_requests
        on context_assembly_spans.trace_id = assembled_requests.trace_id
),

exclusion_measures as (
    select
        trace_date,
        prompt_version,
        count(*) as excluded_chunk_count,
        {%- for reason in reasons %}
        sum(case when reason = '{{ reason }}' then 1 else 0 end) as excluded_{{ reason }}_count,
        {%- endfor %}
        sum(
            case
                when reason is null or reason not in ('{{ reasons | join("', '") }}') then 1
                else 0
            end
        ) as excluded_other_count
    from excluded_chunks
    group by trace_date, prompt_version
),

measured as (
    select
        {{ hash_key(['request_measures.trace_date', 'request_measures.prompt_version']) }}
            as context_segment_id,
        request_measures.trace_date,
        request_measures.prompt_version,
        request_measures.trace_count,
        request_measures.budget_known_count,
        request_measures.budgeted_tokens_total,
        request_measures.token_budget_total,
        {{ safe_divide('request_measures.budgeted_tokens_total', 'request_measures.token_budget_total') }}
            as budget_use_pooled,
        request_measures.budget_use_mean,
        request_measures.budget_use_p95,
        request_measures.over_budget_count,
        request_measures.tokens_total_sum,
        {%- for section in sections %}
        request_measures.tokens_{{ section }}_sum,
        request_measures.tokens_{{ section }}_mean,
        request_measures.tokens_{{ section }}_p95,
        {%- endfor %}
        request_measures.truncated_count,
        {{ safe_divide('request_measures.truncated_count', 'request_measures.trace_count') }}
            as truncation_rate,
        coalesce(exclusion_measures.excluded_chunk_count, 0) as excluded_chunk_count,
        {%- for reason in reasons %}
        coalesce(exclusion_measures.excluded_{{ reason }}_count, 0) as excluded_{{ reason }}_count,
        {%- endfor %}
        coalesce(exclusion_measures.excluded_other_count, 0) as excluded_other_count
    from request_measures
    left join exclusion_measures
        on request_measures.trace_date = exclusion_measures.trace_date
        and request_measures.prompt_version = exclusion_measures.prompt_version
),

final as (
    select
        measured.*,
        {{ mart_lineage_columns('day_lineage', ['spans']) }}
    from measured
    inner join day_lineage
        on measured.trace_date = day_lineage.trace_date
)

{{ with_archived_days('final', 'trace_date') }}
