{{ config(materialized='table') }}

with

days as (
    {{ date_spine(var('time_spine_start', '2020-01-01'), var('time_spine_end', '2040-12-31')) }}
),

final as (
    select date_day
    from days
)

select * from final
