{#-
    Portable functions the warehouse core (intermediate, core and metric marts) needs beyond
    `functions.sql`. Same rule: `duckdb__` for the embedded default, `spark__` for Spark SQL,
    `default__` ANSI SQL or a compile error (`not_ported`).
-#}

{% macro duration_ms_between(start_expression, end_expression) %}
    {#- Milliseconds from start to end (double), microsecond precision. -#}
    {{ return(adapter.dispatch('duration_ms_between', 'tracehouse')(start_expression, end_expression)) }}
{% endmacro %}
{% macro duckdb__duration_ms_between(start_expression, end_expression) -%}
    ((epoch_us({{ end_expression }}) - epoch_us({{ start_expression }})) / 1000.0)
{%- endmacro %}
{% macro spark__duration_ms_between(start_expression, end_expression) -%}
    ((unix_micros({{ end_expression }}) - unix_micros({{ start_expression }})) / 1000.0)
{%- endmacro %}
{% macro default__duration_ms_between(start_expression, end_expression) %}{{ not_ported('duration_ms_between') }}{% endmacro %}


{% macro utc_date(expression) %}
    {#- The UTC calendar date of a timestamp (the session runs in UTC). -#}
    {{ return(adapter.dispatch('utc_date', 'tracehouse')(expression)) }}
{% endmacro %}
{% macro duckdb__utc_date(expression) -%}
    cast({{ expression }} as date)
{%- endmacro %}
{% macro spark__utc_date(expression) -%}
    to_date({{ expression }})
{%- endmacro %}
{% macro default__utc_date(expression) -%}
    {#- ANSI SQL. -#}
    cast({{ expression }} as date)
{%- endmacro %}


{% macro exact_sum(expression, scale=12) %}
    {#-
        A sum of doubles that does not depend on the order rows are added in: each value is
        fixed to `scale` decimals and summed as a decimal, then returned as a double. Parallel
        float sums differ in the last bits from run to run, which would break the invariant that
        an incremental build equals a full refresh row for row.
    -#}
    {%- set precision = 18 -%}
    cast(sum(cast({{ expression }} as decimal({{ precision }}, {{ scale }}))) as double)
{%- endmacro %}


{% macro list_agg_ordered(expression, order_by) %}
    {#- The values of a group as a list, ordered by `order_by` (a comma-separated SQL order list). -#}
    {{ return(adapter.dispatch('list_agg_ordered', 'tracehouse')(expression, order_by)) }}
{% endmacro %}
{% macro duckdb__list_agg_ordered(expression, order_by) -%}
    list({{ expression }} order by {{ order_by }})
{%- endmacro %}
{% macro spark__list_agg_ordered(expression, order_by) -%}
    {#- Spark: sort (order key struct, value) pairs, then keep the values; ascending keys only. -#}
    transform(array_sort(collect_list(struct(struct({{ order_by }}) as k, {{ expression }} as v))), x -> x.v)
{%- endmacro %}
{% macro default__list_agg_ordered(expression, order_by) -%}
    {#- ANSI SQL. -#}
    array_agg({{ expression }} order by {{ order_by }})
{%- endmacro %}


{% macro list_concat_agg(list_expression) %}
    {#- All elements of the lists of a group, in one list (order not defined). -#}
    {{ return(adapter.dispatch('list_concat_agg', 'tracehouse')(list_expression)) }}
{% endmacro %}
{% macro duckdb__list_concat_agg(list_expression) -%}
    flatten(list({{ list_expression }}))
{%- endmacro %}
{% macro spark__list_concat_agg(list_expression) -%}
    flatten(collect_list({{ list_expression }}))
{%- endmacro %}
{% macro default__list_concat_agg(list_expression) %}{{ not_ported('list_concat_agg') }}{% endmacro %}


{% macro list_join(list_expression, separator) %}
    {{ return(adapter.dispatch('list_join', 'tracehouse')(list_expression, separator)) }}
{% endmacro %}
{% macro duckdb__list_join(list_expression, separator) -%}
    array_to_string({{ list_expression }}, '{{ separator }}')
{%- endmacro %}
{% macro spark__list_join(list_expression, separator) -%}
    array_join({{ list_expression }}, '{{ separator }}')
{%- endmacro %}
{% macro default__list_join(list_expression, separator) %}{{ not_ported('list_join') }}{% endmacro %}


{% macro list_first(list_expression) %}
    {#- The first element of a list, NULL when empty or NULL. -#}
    {{ return(adapter.dispatch('list_first', 'tracehouse')(list_expression)) }}
{% endmacro %}
{% macro duckdb__list_first(list_expression) -%}
    ({{ list_expression }})[1]
{%- endmacro %}
{% macro spark__list_first(list_expression) -%}
    try_element_at({{ list_expression }}, 1)
{%- endmacro %}
{% macro default__list_first(list_expression) %}{{ not_ported('list_first') }}{% endmacro %}


{% macro list_except(left_list, right_list) %}
    {#- Elements of the left list not in the right list (left order kept); right NULL = empty. -#}
    {{ return(adapter.dispatch('list_except', 'tracehouse')(left_list, right_list)) }}
{% endmacro %}
{% macro duckdb__list_except(left_list, right_list) -%}
    list_filter({{ left_list }}, lambda x: not coalesce(list_contains({{ right_list }}, x), false))
{%- endmacro %}
{% macro spark__list_except(left_list, right_list) -%}
    filter({{ left_list }}, x -> not coalesce(array_contains({{ right_list }}, x), false))
{%- endmacro %}
{% macro default__list_except(left_list, right_list) %}{{ not_ported('list_except') }}{% endmacro %}


{% macro list_of_present(expressions) %}
    {#- A list of the non-NULL values among `expressions` (a Python list of SQL strings), in order. -#}
    {{ return(adapter.dispatch('list_of_present', 'tracehouse')(expressions)) }}
{% endmacro %}
{% macro duckdb__list_of_present(expressions) -%}
    list_filter([{{ expressions | join(', ') }}], lambda x: x is not null)
{%- endmacro %}
{% macro spark__list_of_present(expressions) -%}
    filter(array({{ expressions | join(', ') }}), x -> x is not null)
{%- endmacro %}
{% macro default__list_of_present(expressions) %}{{ not_ported('list_of_present') }}{% endmacro %}


{% macro empty_list(logical='list_str') %}
    {{ return(adapter.dispatch('empty_list', 'tracehouse')(logical)) }}
{% endmacro %}
{% macro duckdb__empty_list(logical='list_str') -%}
    cast([] as {{ sql_type(logical) }})
{%- endmacro %}
{% macro spark__empty_list(logical='list_str') -%}
    cast(array() as {{ sql_type(logical) }})
{%- endmacro %}
{% macro default__empty_list(logical='list_str') %}{{ not_ported('empty_list') }}{% endmacro %}


{% macro explode_list(list_expression) %}
    {#- A set-returning select item: one output row per list element. -#}
    {{ return(adapter.dispatch('explode_list', 'tracehouse')(list_expression)) }}
{% endmacro %}
{% macro duckdb__explode_list(list_expression) -%}
    unnest({{ list_expression }})
{%- endmacro %}
{% macro spark__explode_list(list_expression) -%}
    explode({{ list_expression }})
{%- endmacro %}
{% macro default__explode_list(list_expression) %}{{ not_ported('explode_list') }}{% endmacro %}


{% macro timestamp_literal(text) %}
    {{ return(adapter.dispatch('timestamp_literal', 'tracehouse')(text)) }}
{% endmacro %}
{% macro duckdb__timestamp_literal(text) -%}
    cast('{{ text }}' as timestamptz)
{%- endmacro %}
{% macro spark__timestamp_literal(text) -%}
    cast('{{ text }}' as timestamp)
{%- endmacro %}
{% macro default__timestamp_literal(text) -%}
    {#- ANSI SQL. -#}
    cast('{{ text }}' as timestamp with time zone)
{%- endmacro %}


{% macro list_sorted_distinct(list_expression) %}
    {#- The distinct non-NULL elements of a list, sorted ascending. -#}
    {{ return(adapter.dispatch('list_sorted_distinct', 'tracehouse')(list_expression)) }}
{% endmacro %}
{% macro duckdb__list_sorted_distinct(list_expression) -%}
    list_sort(list_distinct({{ list_expression }}))
{%- endmacro %}
{% macro spark__list_sorted_distinct(list_expression) -%}
    array_sort(array_distinct(filter({{ list_expression }}, x -> x is not null)))
{%- endmacro %}
{% macro default__list_sorted_distinct(list_expression) %}{{ not_ported('list_sorted_distinct') }}{% endmacro %}


{% macro first_value_by(value, keys, where=none) %}
    {#-
        Aggregate: `value` of the row with the smallest `keys` (a list of SQL expressions,
        compared in order, NULLs last) among the rows where `where` holds and `value` is not
        NULL. One pass, no per-group sort (unlike an ordered list aggregate).
    -#}
    {{ return(adapter.dispatch('first_value_by', 'tracehouse')(value, keys, where)) }}
{% endmacro %}
{% macro duckdb__first_value_by(value, keys, where=none) -%}
    arg_min({{ value }}, row({{ keys | join(', ') }}))
    {%- if where %} filter (where {{ where }}){% endif %}
{%- endmacro %}
{% macro spark__first_value_by(value, keys, where=none) -%}
    min_by({{ value }}, struct({{ keys | join(', ') }}))
    filter (where {{ value }} is not null{% if where %} and ({{ where }}){% endif %})
{%- endmacro %}
{% macro default__first_value_by(value, keys, where=none) %}{{ not_ported('first_value_by') }}{% endmacro %}


{% macro list_agg(expression) %}
    {#- The values of a group as a list, order not defined (sort it afterwards if it matters). -#}
    {{ return(adapter.dispatch('list_agg', 'tracehouse')(expression)) }}
{% endmacro %}
{% macro duckdb__list_agg(expression) -%}
    list({{ expression }})
{%- endmacro %}
{% macro spark__list_agg(expression) -%}
    collect_list({{ expression }})
{%- endmacro %}
{% macro default__list_agg(expression) -%}
    {#- ANSI SQL. -#}
    array_agg({{ expression }})
{%- endmacro %}
