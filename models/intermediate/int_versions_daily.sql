{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_vanished_days() }}"],
        meta={'test_slice': 'trace_date'},
    )
}}
{#-
    The state behind dim_versions and fct_eval_candidates: per trace_date and version (dimension,
    scope, value), when it was first and last seen that day and how many requests ran with it.
    One extra row per day, version_dimension '(day)', carries the day's trace count, so every day
    with traces has a row.

    Incremental like the agg_* marts (macros/portable/marts.sql): a run rebuilds, from all their
    requests, the days of the traces base_lake__spans wrote since this model's watermark (versions
    come from spans only: late feedback does not rebuild a day), and every stored day whose trace
    count changed; a day with no trace left is deleted. Every row written
    is stamped `_loaded_at` (this build), so the models downstream (fct_eval_candidates) know
    which days were rebuilt. dim_versions is a small rollup of this table.
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

all_requests as (
    select * from {{ ref('fct_requests') }}
),

requests as (
    {{ mart_requests_in_scope('all_requests', ['spans']) }}
),

day_lineage as (
    {{ mart_day_lineage('requests', ['spans']) }}
),

validator_items as (
    select
        trace_date,
        event_time,
        {{ explode_list('validator_versions') }} as item
    from requests
),

tool_items as (
    select
        trace_date,
        event_time,
        {{ explode_list('tool_versions') }} as item
    from requests
),

version_facts as (
    {%- for dimension in scalar_dimensions %}
    select
        trace_date,
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
        trace_date,
        '{{ dimension }}' as version_dimension,
        '{{ scope }}=' || coalesce({{ scope }}, 'unknown') as scope_key,
        {{ dimension }} as version_value,
        event_time
    from requests
    where {{ dimension }} is not null
    union all
    {%- endfor %}
    select
        trace_date,
        'validator_version' as version_dimension,
        'validator_name=' || split_part(item, '=', 1) as scope_key,
        split_part(item, '=', 2) as version_value,
        event_time
    from validator_items
    union all
    select
        trace_date,
        'tool_version' as version_dimension,
        'tool_name=' || split_part(item, '=', 1) as scope_key,
        split_part(item, '=', 2) as version_value,
        event_time
    from tool_items
    union all
    -- the day itself: every day with traces has a row
    select
        trace_date,
        '(day)' as version_dimension,
        'all' as scope_key,
        '' as version_value,
        event_time
    from requests
),

grouped as (
    select
        trace_date,
        version_dimension,
        scope_key,
        version_value,
        min(event_time) as first_seen_at,
        max(event_time) as last_seen_at,
        count(*) as request_count
    from version_facts
    group by trace_date, version_dimension, scope_key, version_value
),

final as (
    select
        grouped.trace_date,
        grouped.version_dimension,
        grouped.scope_key,
        grouped.version_value,
        grouped.first_seen_at,
        grouped.last_seen_at,
        grouped.request_count,
        day_lineage.day_trace_count,
        {{ load_stamp() }} as _loaded_at
    from grouped
    inner join day_lineage
        on grouped.trace_date = day_lineage.trace_date
)

select * from final
