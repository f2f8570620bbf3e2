{#-
    Spark has no `delete+insert` incremental strategy, and a Parquet table has no DELETE. The
    models keep their strategy (`delete+insert` on unique_key, the invariant incremental == full
    refresh rests on it); on Spark it is carried out with Spark's own statements:

    - Parquet (the local default): `insert overwrite` of the table with its rows whose key was
      not rebuilt plus the rebuilt rows (copy on write). The new rows are first written to a
      helper table, because Spark cannot overwrite a table the same query reads.
    - Delta, Iceberg, Hudi (tables with DELETE): `delete from ... where key in (new keys)`, then
      `insert into`.

    These two macros override dbt-spark's validation and SQL choice (a root-project macro takes
    precedence over the adapter's); every other strategy goes to dbt-spark unchanged.
-#}

{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
    {%- if raw_strategy == 'delete+insert' -%}
        {{ return(raw_strategy) }}
    {%- endif -%}
    {{ return(dbt_spark.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) }}
{% endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
    {%- if strategy == 'delete+insert' -%}
        {{ return(spark_delete_insert(source, target, unique_key)) }}
    {%- endif -%}
    {{ return(dbt_spark.dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates)) }}
{% endmacro %}


{% macro spark_key_match(left, right, unique_key) -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- for key in keys -%}
        {{ left }}.{{ key }} <=> {{ right }}.{{ key }}{{ " and " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}


{% macro spark_delete_insert(source, target, unique_key) %}
    {#- Runs the preparatory statements; returns the last one for the materialization to run. -#}
    {%- if unique_key is none -%}
        {{ exceptions.raise_compiler_error("delete+insert on Spark needs a unique_key (" ~ target ~ ")") }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(target) | map(attribute='quoted') | join(', ') -%}
    {%- set file_format = config.get('file_format', default='parquet') -%}
    {%- set rebuilt = target.incorporate(path={'identifier': target.identifier ~ '__dbt_rebuilt'}) -%}
    {%- do run_query('drop table if exists ' ~ rebuilt) -%}
    {%- do run_query('create table ' ~ rebuilt ~ ' using parquet as select * from ' ~ source) -%}
    {%- if file_format in ['delta', 'iceberg', 'hudi'] -%}
        {%- do run_query(
            'delete from ' ~ target ~ ' as target where exists (select 1 from ' ~ rebuilt
            ~ ' as rebuilt where ' ~ spark_key_match('target', 'rebuilt', unique_key) ~ ')'
        ) -%}
        {%- do run_query('insert into ' ~ target ~ ' select ' ~ columns ~ ' from ' ~ rebuilt) -%}
    {%- else -%}
        {%- set merged = target.incorporate(path={'identifier': target.identifier ~ '__dbt_merged'}) -%}
        {%- do run_query('drop table if exists ' ~ merged) -%}
        {%- do run_query(
            'create table ' ~ merged ~ ' using parquet as select ' ~ columns ~ ' from ' ~ target
            ~ ' as target where not exists (select 1 from ' ~ rebuilt ~ ' as rebuilt where '
            ~ spark_key_match('target', 'rebuilt', unique_key) ~ ')'
            ~ ' union all select ' ~ columns ~ ' from ' ~ rebuilt
        ) -%}
        {%- do run_query('insert overwrite table ' ~ target ~ ' select ' ~ columns ~ ' from ' ~ merged) -%}
        {%- do run_query('drop table if exists ' ~ merged) -%}
    {%- endif -%}
    {{ return('drop table if exists ' ~ rebuilt) }}
{% endmacro %}


{% macro delete_where(condition) %}
    {#- Post-hook SQL: delete the rows of `{{ this }}` where `condition` holds (engine's way). -#}
    {{ return(run_statements(delete_statements(this, condition))) }}
{% endmacro %}


{% macro wide_view_materialization() %}
    {#-
        The materialization of a model that is a view for its size (fct_spans). Spark's Hive
        metastore keeps a view's SQL text, and its embedded Derby store caps it at 32,700
        characters (fct_spans expands to more): on Spark it is a table.
    -#}
    {{ return(adapter.dispatch('wide_view_materialization', 'tracehouse')()) }}
{% endmacro %}
{% macro default__wide_view_materialization() %}{{ return('view') }}{% endmacro %}
{% macro spark__wide_view_materialization() %}{{ return('table') }}{% endmacro %}
