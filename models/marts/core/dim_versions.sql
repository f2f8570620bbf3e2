{#-
    The deploy timeline: one row per (version_dimension, scope_key, version_value) with when it
    was first and last seen in production traffic, how many requests ran with it, and the value
    it replaced (`previous_value`: the value of the same dimension and scope first seen just
    before it). Change points are attributed to the versions first seen near them.
    Scopes: `all`; `route_name=X` for model_name per route; `task_type=X` for prompt_version and system_prompt_version per
    task type; `validator_name=X` for validator_version; `tool_name=X` for tool_version.
    A small table rolled up on every run from int_versions_daily (one row per day and version,
    incremental on the days a run touched), never from fct_requests: its cost follows the
    number of versions, not of requests.
-#}

with

version_days as (
    select * from {{ ref('int_versions_daily') }}
    where version_dimension <> '(day)'
),

grouped as (
    select
        version_dimension,
        scope_key,
        version_value,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        cast(sum(request_count) as {{ sql_type('int') }}) as request_count
    from version_days
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
