{#-
    The deploy timeline: one row per (version_dimension, scope_key, version_value) with when it
    was first and last seen in production traffic, how many requests ran with it, and the value
    it replaced (`previous_value`: the value of the same dimension and scope first seen just
    before it). Change points are attributed to the versions first seen near them.
    Scopes: `all`; `route_name=X` for model_name per route; `task_type=X` for prompt_version and system_prompt_version per
    task type; `validator_name=X` for validator_version; `tool_name=X` for tool_version.
    A table rebuilt from fct_requests on every run (small: one row per version).
-#}
{%- set scalar_dimensions = [
    'release_sha', 'app_version', 'prompt_version', 'retriever_version', 'index_version',
    'embedding_version', 'reranker_version', 'route_policy_version', 'classifier_version',
    'planner_version', 'system_prompt_version', 'model_name',
] -%}
{%- set scoped_dimensions = [
    ['model_name', 'route_name'],
    ['prompt_version', 'task_type'],
    ['system_prompt_version', 'task_type'],
] -%}

with

requests as (
    select * from {{ ref('fct_requests') }}
),

validator_items as (
    select
        event_time,
        {{ explode_list('validator_versions') }} as item
    from requests
),

tool_items as (
    select
        event_time,
        {{ explode_list('tool_versions') }} as item
    from requests
),

version_facts as (
    {%- for dimension in scalar_dimensions %}
    select
        '{{ dimension }}' as version_dimension,
        'all' as scope_key,
        {{ dimension }} as version_value,
        event_time
    from requests
    where {{ dimension }} is not null
    union all
    {%- endfor %}
    {%- for dimension, scope in scoped_dimensions %}
    select
        '{{ dimension }}' as version_dimension,
        '{{ scope }}=' || coalesce({{ scope }}, 'unknown') as scope_key,
        {{ dimension }} as version_value,
        event_time
    from requests
    where {{ dimension }} is not null
    union all
    {%- endfor %}
    select
        'validator_version' as version_dimension,
        'validator_name=' || split_part(item, '=', 1) as scope_key,
        split_part(item, '=', 2) as version_value,
        event_time
    from validator_items
    union all
    select
        'tool_version' as version_dimension,
        'tool_name=' || split_part(item, '=', 1) as scope_key,
        split_part(item, '=', 2) as version_value,
        event_time
    from tool_items
),

grouped as (
    select
        version_dimension,
        scope_key,
        version_value,
        min(event_time) as first_seen_at,
        max(event_time) as last_seen_at,
        count(*) as request_count
    from version_facts
    group by version_dimension, scope_key, version_value
),

final as (
    select
        {{ hash_key(['version_dimension', 'scope_key', 'version_value']) }} as version_id,
        version_dimension,
        scope_key,
        version_value,
        first_seen_at,
        last_seen_at,
        request_count,
        lag(version_value) over (
            partition by version_dimension, scope_key
            order by first_seen_at, version_value
        ) as previous_value,
        row_number() over (
            partition by version_dimension, scope_key
            order by first_seen_at desc, version_value desc
        ) = 1 as is_latest
    from grouped
)

select * from final
