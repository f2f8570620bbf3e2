{#-
    Generic test: the combination of `combination_of_columns` is unique (and, with
    `not_null=true`, the default, never NULL in any of them). Fails with the offending keys.

        data_tests:
          - unique_combination:
              arguments:
                combination_of_columns: [metric, grain, period_start, segment_key]
-#}
{% test unique_combination(model, combination_of_columns, not_null=true) %}
{%- set columns = combination_of_columns | join(', ') %}
with

grouped as (
    select
        {{ columns }},
        count(*) as row_count
    from {{ model }}
    group by {{ columns }}
),

final as (
    select * from grouped
    where row_count > 1
    {%- if not_null %}
    {%- for column in combination_of_columns %}
        or {{ column }} is null
    {%- endfor %}
    {%- endif %}
)

select * from final
{% endtest %}
