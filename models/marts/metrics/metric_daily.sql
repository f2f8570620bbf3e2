{{
    config(
        materialized='incremental',
        unique_key='period_start',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_vanished_periods('day') }}"],
    )
}}
{#- The contract's metric series by day: see macros/incremental/metric_series.sql and docs/warehouse.md. -#}

{{ metric_series('day') }}
