{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_vanished_days() }}"],
    )
}}
{#-
    Quality by version, long format: per day and every version dimension of a request (release,
    prompt, model, route, retriever, index, embedding, reranker, route policy, classifier,
    planner, system prompt, each validator, each tool), the online proxies (task success,
    thumbs-down, escalation, regenerate, rephrase, abandonment, errors) and the eval scores of
    annotated traces, with their counts. Filter one version_dimension and compare its values.
    A trace counts once per (dimension, value); list dimensions (validator_versions,
    tool_versions, values 'name=version') count it once per element, or under '(none)'.
-#}

{%- set scalar_dimensions = var('version_quality_scalar_dimensions', [
    'release_sha', 'app_version', 'prompt_version', 'model_name', 'route_name',
    'retriever_version', 'index_version', 'embedding_version', 'reranker_version',
    'route_policy_version', 'classifier_version', 'planner_version', 'system_prompt_version',
]) %}
{%- set list_dimensions = var('version_quality_list_dimensions', ['validator_versions', 'tool_versions']) %}
{%- set scores = ['correctness', 'groundedness', 'citation_quality', 'completeness'] %}
{%- set shares = ['tool_use_correct', 'policy_compliant'] %}
{%- set proxies = [
    ('successful_task', 'is_successful_task'), ('thumbs_down', 'has_thumbs_down'),
    ('escalation', 'has_escalation'), ('regenerate', 'has_regenerate'),
    ('rephrase', 'has_rephrase'), ('task_abandoned', 'has_task_abandoned'),
    ('thumbs_up', 'has_thumbs_up'), ('error', 'is_error'),
] %}

with

requests as (
    {{ mart_requests_in_scope(ref('fct_requests')) }}
),

day_lineage as (
    {{ mart_day_lineage('requests') }}
),

{#-
    Build cost (docs/warehouse.md, "Build times"): the scalar dimensions are one GROUPING SETS
    pass over the request rows (one grouping set per dimension), not a union of one copy of
    every request per dimension (a 6M-row projection on a 10M warehouse's hour); only list
    dimensions, whose elements are deduplicated per trace first, join the measures back.
-#}
{%- set measure_columns = ['trace_date', 'event_time', 'duration_ms', 'cost_usd', 'is_annotated']
    + proxies | map('last') | list + scores + shares %}
{%- set aggregates -%}
        count(*) as trace_count,
        {%- for name, column in proxies %}
        sum(case when {{ column }} then 1 else 0 end) as {{ name }}_count,
        {%- endfor %}
        sum(case when is_annotated then 1 else 0 end) as annotated_count,
        {%- for score in scores %}
        count({{ score }}) as {{ score }}_n,
        {{ exact_sum(score, 9) }} as {{ score }}_sum,
        {{ exact_mean(score, 9) }} as {{ score }}_mean,
        {%- endfor %}
        {%- for share in shares %}
        count({{ share }}) as {{ share }}_n,
        sum(case when {{ share }} then 1 else 0 end) as {{ share }}_count,
        {%- endfor %}
        {{ exact_sum('coalesce(cost_usd, 0)') }} as cost_usd,
        {{ exact_sum('coalesce(duration_ms, 0)', 3) }} as duration_ms_sum,
        {{ percentile('duration_ms', 0.95) }} as duration_ms_p95,
        min(event_time) as first_event_at,
        max(event_time) as last_event_at
{%- endset %}

trace_measures as (
    select
        trace_id,
        {{ measure_columns | join(', ') }}
    from requests
),

{%- if scalar_dimensions %}

scalar_versioned as (
    select
        {%- for dimension in scalar_dimensions %}
        {{ none_if_null(dimension) }} as {{ dimension }},
        {%- endfor %}
        {{ measure_columns | join(', ') }}
    from requests
),

scalar_aggregated as (
    {#- one grouping set per dimension: its rows are (day, that dimension's value) -#}
    select
        trace_date,
        case
            {%- for dimension in scalar_dimensions %}
            when grouping({{ dimension }}) = 0 then '{{ dimension }}'
            {%- endfor %}
        end as version_dimension,
        case
            {%- for dimension in scalar_dimensions %}
            when grouping({{ dimension }}) = 0 then {{ dimension }}
            {%- endfor %}
        end as version_value,
        {{ aggregates }}
    from scalar_versioned
    group by grouping sets (
        {%- for dimension in scalar_dimensions %}
        (trace_date, {{ dimension }}){{ "," if not loop.last }}
        {%- endfor %}
    )
),
{%- endif %}
{%- if list_dimensions %}

{%- for dimension in list_dimensions %}

listed_{{ dimension }} as (
    {#- a trace counts once per distinct element of the list -#}
    select distinct
        requests.trace_id,
        {{ none_if_null('listed.value') }} as version_value
    from requests
    {{ unnest_join('requests.' ~ dimension, 'listed') }}
),
{%- endfor %}

list_versioned as (
    {%- for dimension in list_dimensions %}
    select
        '{{ dimension }}' as version_dimension,
        listed.version_value,
        {%- for column in measure_columns %}
        trace_measures.{{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from listed_{{ dimension }} as listed
    inner join trace_measures
        on listed.trace_id = trace_measures.trace_id
    union all
    select
        '{{ dimension }}' as version_dimension,
        '(none)' as version_value,
        {{ measure_columns | join(', ') }}
    from requests
    where coalesce({{ list_length(dimension) }}, 0) = 0
    {{ "union all" if not loop.last }}
    {%- endfor %}
),
{%- endif %}

aggregated as (
    {%- if scalar_dimensions %}
    select * from scalar_aggregated
    {%- endif %}
    {%- if scalar_dimensions and list_dimensions %}
    union all
    {%- endif %}
    {%- if list_dimensions %}
    select
        trace_date,
        version_dimension,
        version_value,
        {{ aggregates }}
    from list_versioned
    group by trace_date, version_dimension, version_value
    {%- endif %}
),

measured as (
    select
        {{ hash_key(['trace_date', 'version_dimension', 'version_value']) }} as version_quality_id,
        *,
        {%- for name, column in proxies %}
        {{ safe_divide(name ~ '_count', 'trace_count') }} as {{ name }}_rate,
        {%- endfor %}
        {%- for share in shares %}
        {{ safe_divide(share ~ '_count', share ~ '_n') }} as {{ share }}_share,
        {%- endfor %}
        {{ safe_divide('cost_usd', 'trace_count') }} as cost_per_request_usd,
        {{ safe_divide('cost_usd', 'successful_task_count') }} as cost_per_successful_task_usd
    from aggregated
),

final as (
    select
        measured.*,
        {{ mart_lineage_columns('day_lineage') }}
    from measured
    inner join day_lineage
        on measured.trace_date = day_lineage.trace_date
)

{{ with_archived_days('final', 'trace_date') }}
