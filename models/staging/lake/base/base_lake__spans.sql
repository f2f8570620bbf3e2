{{
    config(
        materialized='incremental',
        unique_key='span_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    A table, not a view (the staging layer's default), because every span-type model reads it
    and 10M spans must not be deduplicated thirteen times. Incremental on ingest_time: a run
    re-reads what landed since the newest row it has, minus the lookback, and replaces those ids.
    The newest copy of an id is always in that window when any copy is, so the result equals a
    full refresh.
-#}

with

landed as (
    select * from {{ source('lake', 'spans') }}
    {% if is_incremental() %}
    where ingest_time > (
        select {{ days_before('max(ingest_time)', var('lookback_days')) }} from {{ this }}
    )
    {% endif %}
),

deduplicated as (
    {{ latest_per_id(
        'landed', 'span_id',
        'end_time desc, duration_ms desc, attributes desc, status desc, dt desc',
    ) }}
),

final as (
    select
        {%- for column, logical in contract_columns('spans') %}
        {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from deduplicated
)

select * from final
