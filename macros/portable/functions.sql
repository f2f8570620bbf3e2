{#- Portable functions the models use where ANSI SQL has no common spelling. -#}

{% macro percentile(expression, fraction) %}
    {{ return(adapter.dispatch('percentile', 'tracehouse')(expression, fraction)) }}
{% endmacro %}
{% macro duckdb__percentile(expression, fraction) -%}
    {{ duckdb__percentiles(expression, fraction) }}
{%- endmacro %}
{% macro spark__percentile(expression, fraction) -%}
    percentile({{ expression }}, {{ fraction }})
{%- endmacro %}
{% macro default__percentile(expression, fraction) -%}
    {#- ANSI SQL. -#}
    percentile_cont({{ fraction }}) within group (order by {{ expression }})
{%- endmacro %}


{% macro percentiles(expression, fractions) %}
    {#-
        Several exact continuous percentiles of one expression in ONE aggregate, as a list in the
        order of `fractions` (read with list_item(list, 1..n)): one sorted state per group
        instead of one per fraction. Same values as percentile(expression, fraction) each.
    -#}
    {{ return(adapter.dispatch('percentiles', 'tracehouse')(expression, fractions)) }}
{% endmacro %}
{% macro duckdb__percentiles(expression, fractions) -%}
    {#-
        quantile_cont over the group's values collected as a list, not quantile_cont as the
        group's aggregate: the same values (NULLs left out, the same interpolation and type), but
        the hash aggregate's state is a plain list, which DuckDB spills in bounded space when the
        build is short of memory. quantile_cont's own state did not: on the 30M bench lake,
        agg_stage_latency with a 2 GB limit wrote 12 GB of temp files before it was stopped (the
        list: 2.8 GB, 12 s; with 5 GB both take 10 s). `fractions` is one fraction or a list.
    -#}
    {%- set fraction_sql = fractions if (fractions is string or fractions is not iterable) else '[' ~ (fractions | join(', ')) ~ ']' -%}
    list_aggregate(list({{ expression }}) filter (where {{ expression }} is not null), 'quantile_cont', {{ fraction_sql }})
{%- endmacro %}
{% macro spark__percentiles(expression, fractions) -%}
    percentile({{ expression }}, array({{ fractions | join(', ') }}))
{%- endmacro %}
{% macro default__percentiles(expression, fractions) %}{{ not_ported('percentiles') }}{% endmacro %}


{% macro list_item(list_expression, position) %}
    {#- The element at 1-based `position` of a list (NULL when the list is NULL). -#}
    {{ return(adapter.dispatch('list_item', 'tracehouse')(list_expression, position)) }}
{% endmacro %}
{% macro duckdb__list_item(list_expression, position) -%}
    ({{ list_expression }})[{{ position }}]
{%- endmacro %}
{% macro spark__list_item(list_expression, position) -%}
    try_element_at({{ list_expression }}, {{ position }})
{%- endmacro %}
{% macro default__list_item(list_expression, position) %}{{ not_ported('list_item') }}{% endmacro %}


{% macro truncate_to(grain, expression) %}
    {#- grain: 'day' or 'hour'; the result is a timestamp at the start of the UTC period. -#}
    {{ return(adapter.dispatch('truncate_to', 'tracehouse')(grain, expression)) }}
{% endmacro %}
{% macro duckdb__truncate_to(grain, expression) -%}
    date_trunc('{{ grain }}', {{ expression }})
{%- endmacro %}
{% macro spark__truncate_to(grain, expression) -%}
    date_trunc('{{ grain }}', {{ expression }})
{%- endmacro %}
{% macro default__truncate_to(grain, expression) %}{{ not_ported('truncate_to') }}{% endmacro %}


{% macro distinct_sorted_list_agg(expression) %}
    {#- Aggregate: the group's distinct non-NULL values of `expression`, as a sorted list. -#}
    {{ return(adapter.dispatch('distinct_sorted_list_agg', 'tracehouse')(expression)) }}
{% endmacro %}
{% macro duckdb__distinct_sorted_list_agg(expression) -%}
    list(distinct {{ expression }} order by {{ expression }}) filter (where {{ expression }} is not null)
{%- endmacro %}
{% macro spark__distinct_sorted_list_agg(expression) -%}
    array_sort(collect_set({{ expression }}))
{%- endmacro %}
{% macro default__distinct_sorted_list_agg(expression) %}{{ not_ported('distinct_sorted_list_agg') }}{% endmacro %}


{% macro list_length(expression) %}
    {{ return(adapter.dispatch('list_length', 'tracehouse')(expression)) }}
{% endmacro %}
{% macro duckdb__list_length(expression) -%}
    len({{ expression }})
{%- endmacro %}
{% macro spark__list_length(expression) -%}
    size({{ expression }})
{%- endmacro %}
{% macro default__list_length(expression) %}{{ not_ported('list_length') }}{% endmacro %}


{% macro list_contains(list_expression, value_expression) %}
    {{ return(adapter.dispatch('list_contains', 'tracehouse')(list_expression, value_expression)) }}
{% endmacro %}
{% macro duckdb__list_contains(list_expression, value_expression) -%}
    list_contains({{ list_expression }}, {{ value_expression }})
{%- endmacro %}
{% macro spark__list_contains(list_expression, value_expression) -%}
    array_contains({{ list_expression }}, {{ value_expression }})
{%- endmacro %}
{% macro default__list_contains(list_expression, value_expression) %}{{ not_ported('list_contains') }}{% endmacro %}


{% macro lists_overlap(left_list, right_list) %}
    {#- True when the two lists share at least one element; NULL when either is NULL. -#}
    {{ return(adapter.dispatch('lists_overlap', 'tracehouse')(left_list, right_list)) }}
{% endmacro %}
{% macro duckdb__lists_overlap(left_list, right_list) -%}
    list_has_any({{ left_list }}, {{ right_list }})
{%- endmacro %}
{% macro spark__lists_overlap(left_list, right_list) -%}
    arrays_overlap({{ left_list }}, {{ right_list }})
{%- endmacro %}
{% macro default__lists_overlap(left_list, right_list) %}{{ not_ported('lists_overlap') }}{% endmacro %}


{% macro json_extract_string(column, key) %}
    {{ return(adapter.dispatch('json_extract_string', 'tracehouse')(column, key)) }}
{% endmacro %}
{% macro duckdb__json_extract_string(column, key) -%}
    json_extract_string({{ column }}, '$.{{ key }}')
{%- endmacro %}
{% macro spark__json_extract_string(column, key) -%}
    get_json_object({{ column }}, '$.{{ key }}')
{%- endmacro %}
{% macro default__json_extract_string(column, key) -%}
    {#- ANSI SQL. -#}
    json_value({{ column }}, '$.{{ key }}')
{%- endmacro %}


{% macro hash_key(expressions) %}
    {#- A surrogate key: md5 over the expressions cast to text, NULL-safe, `|`-separated. -#}
    {%- set parts = [] -%}
    {%- for e in expressions -%}
        {%- do parts.append("coalesce(cast(" ~ e ~ " as " ~ sql_type('str') ~ "), '~')") -%}
    {%- endfor -%}
    md5({{ parts | join(" || '|' || ") }})
{%- endmacro %}


{% macro days_before(expression, days) %}
    {{ return(adapter.dispatch('days_before', 'tracehouse')(expression, days)) }}
{% endmacro %}
{% macro duckdb__days_before(expression, days) -%}
    ({{ expression }} - to_days(cast({{ days }} as integer)))
{%- endmacro %}
{% macro spark__days_before(expression, days) -%}
    ({{ expression }} - make_interval(0, 0, 0, {{ days }}))
{%- endmacro %}
{% macro default__days_before(expression, days) -%}
    {#- ANSI SQL. -#}
    ({{ expression }} - interval '{{ days }}' day)
{%- endmacro %}


{% macro not_ported(name) %}
    {#-
        The `default__` of a dispatched macro with no portable SQL spelling: a compile error that
        names the adapter and the macro to add, rather than another engine's syntax.
    -#}
    {{ exceptions.raise_compiler_error(
        "tracehouse: macro '" ~ name ~ "' has no version for adapter '" ~ adapter.type()
        ~ "' (there are duckdb__ and spark__ versions): add a macro `" ~ adapter.type() ~ "__"
        ~ name ~ "` in macros/portable/"
    ) }}
{% endmacro %}
