{#-
    Generic test: a model's (or source's) column-level not_null and accepted_values checks in
    one node and one scan, instead of one dbt node per column and check. Fails with one row per
    offending column and check, naming the column and counting its bad rows:

        data_tests:
          - column_checks:
              arguments:
                not_null: [trace_id, event_time]
                accepted_values:
                  status: [ok, error]

    `not_null`: the columns that must never be NULL. `accepted_values`: per column, the values it
    may hold (NULL passes, as in dbt's accepted_values: pair it with not_null to forbid it).
    A primary key keeps its own `unique` and `not_null` tests on the column. The tested relation
    is dbt's `get_where_subquery`, so a `where` config and the incremental test slice
    (macros/incremental/test_slices.sql) apply as to any generic test. Engine-neutral SQL.
    `tracehouse run` names each failing column and its count in the failure message
    (tracehouse.warehouse.column_check_failures).
-#}
{% test column_checks(model, not_null=[], accepted_values={}) %}
{%- set checks = [] -%}
{%- for column in not_null -%}
    {%- do checks.append((column, 'not_null', column ~ ' is null')) -%}
{%- endfor -%}
{%- for column, values in accepted_values.items() -%}
    {%- set quoted = [] -%}
    {%- for value in values -%}
        {%- do quoted.append("'" ~ (value | string | replace("'", "''")) ~ "'") -%}
    {%- endfor -%}
    {%- do checks.append((column, 'accepted_values',
        column ~ ' is not null and ' ~ column ~ ' not in (' ~ quoted | join(', ') ~ ')')) -%}
{%- endfor -%}
{%- if not checks -%}
    {{ exceptions.raise_compiler_error('column_checks on ' ~ model ~ ': give not_null or accepted_values') }}
{%- endif %}
with

counted as (
    select
    {%- for column, check, failing in checks %}
        count(case when {{ failing }} then 1 end) as failing_{{ loop.index }}{{ ',' if not loop.last }}
    {%- endfor %}
    from {{ model }}
),

failures as (
    {%- for column, check, failing in checks %}
    select
        '{{ column }}' as column_name,
        '{{ check }}' as check_name,
        failing_{{ loop.index }} as failing_rows
    from counted
    {{ 'union all' if not loop.last }}
    {%- endfor %}
)

select * from failures
where failing_rows > 0
{% endtest %}
