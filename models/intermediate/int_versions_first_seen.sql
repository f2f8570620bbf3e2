{{
    config(
        materialized='incremental',
        unique_key='version_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        meta={'test_slice': none},
    )
}}
{#-
    What fct_eval_candidates' novel_version reason depends on, and how it changed: per version
    (dimension and value, scope `all`) the UTC date it was first seen, plus one row for the
    data's first day (version_dimension '(day)'). An incremental run writes only the rows whose
    date changed since the stored one (a new version, a late arrival seen earlier, a version
    whose traces all left: its date becomes NULL), with the stored date in
    `previous_first_seen_date` and the build's `_loaded_at` stamp. fct_eval_candidates rebuilds
    the days between the old and the new date (plus the novelty window) of those rows only.
    Small: one row per version, rolled up from int_versions_daily.
-#}
{%- set version_columns = [
    'release_sha', 'prompt_version', 'retriever_version', 'index_version', 'reranker_version',
    'model_name',
] %}

with

version_days as (
    select * from {{ ref('int_versions_daily') }}
    where scope_key = 'all'
        and version_dimension in ('(day)', '{{ version_columns | join("', '") }}')
),

current_dates as (
    select
        {{ hash_key(['version_dimension', 'version_value']) }} as version_id,
        version_dimension,
        version_value,
        {#- the date fct_eval_candidates compares: utc_date of dim_versions.first_seen_at -#}
        case
            when version_dimension = '(day)' then min(trace_date)
            else {{ utc_date('min(first_seen_at)') }}
        end as first_seen_date
        {%- if not is_incremental() %},
        cast(null as date) as previous_first_seen_date
        {%- endif %}
    from version_days
    group by version_dimension, version_value
),

{% if is_incremental() %}
changed as (
    select
        coalesce(current_dates.version_id, stored.version_id) as version_id,
        coalesce(current_dates.version_dimension, stored.version_dimension) as version_dimension,
        coalesce(current_dates.version_value, stored.version_value) as version_value,
        current_dates.first_seen_date,
        stored.first_seen_date as previous_first_seen_date
    from current_dates
    full outer join {{ this }} as stored
        on current_dates.version_id = stored.version_id
    where current_dates.first_seen_date is distinct from stored.first_seen_date
),
{% else %}
changed as (
    select * from current_dates
),
{% endif %}

final as (
    select
        version_id,
        version_dimension,
        version_value,
        first_seen_date,
        previous_first_seen_date,
        {{ load_stamp() }} as _loaded_at
    from changed
)

select * from final
