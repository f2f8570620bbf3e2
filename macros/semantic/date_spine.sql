{#- One row per day from `start_date` to `end_date` (inclusive), column `date_day` (date). -#}
{% macro date_spine(start_date, end_date) %}
    {{ return(adapter.dispatch('date_spine', 'tracehouse')(start_date, end_date)) }}
{% endmacro %}

{% macro duckdb__date_spine(start_date, end_date) -%}
    select cast(day_at as date) as date_day
    from unnest(generate_series(date '{{ start_date }}', date '{{ end_date }}', interval 1 day)) as spine(day_at)
{%- endmacro %}

{% macro spark__date_spine(start_date, end_date) -%}
    select explode(sequence(date '{{ start_date }}', date '{{ end_date }}', interval 1 day)) as date_day
{%- endmacro %}

{% macro default__date_spine(start_date, end_date) -%}
    {{ exceptions.raise_compiler_error("date_spine has no version for the " ~ adapter.type() ~ " adapter: add " ~ adapter.type() ~ "__date_spine in macros/semantic/date_spine.sql") }}
{%- endmacro %}
