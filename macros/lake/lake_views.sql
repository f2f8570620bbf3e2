{#-
    The lake as relations: one view per landed dataset in the `lake_raw` schema, created at the
    start of every dbt invocation (on-run-start). Sources point at these views, so models never
    hard-code a path, and a lake that has no file yet for a dataset (or no file with a newer
    optional column) still builds: the missing parts become typed, empty or NULL columns.
-#}

{% macro lake_path() %}
    {{ return(var('lake') | replace('\\', '/') | trim) }}
{% endmacro %}

{% macro create_lake_views() %}
    {{ return(adapter.dispatch('create_lake_views', 'tracehouse')()) }}
{% endmacro %}

{% macro duckdb__create_lake_views() %}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set statements = ["create schema if not exists lake_raw"] -%}
    {%- for dataset in ['spans', 'feedback', 'annotations'] -%}
        {%- set glob = lake_path() ~ '/' ~ dataset ~ '/dt=*/*.parquet' -%}
        {%- set n_files = run_query("select count(*) from glob('" ~ glob ~ "')").columns[0].values()[0] -%}
        {%- set present = [] -%}
        {%- if n_files > 0 -%}
            {%- set described = run_query(
                "describe select * from read_parquet('" ~ glob ~ "', hive_partitioning = true, union_by_name = true)"
            ) -%}
            {%- for name in described.columns[0].values() -%}{%- do present.append(name) -%}{%- endfor -%}
        {%- endif -%}
        {%- set items = [] -%}
        {%- for column, logical in contract_columns(dataset) -%}
            {%- if column in present -%}
                {%- do items.append("cast(" ~ column ~ " as " ~ sql_type(logical) ~ ") as " ~ column) -%}
            {%- else -%}
                {%- do items.append("cast(null as " ~ sql_type(logical) ~ ") as " ~ column) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if n_files > 0 -%}
            {%- do items.append("cast(dt as date) as dt") -%}
            {%- set body = "select " ~ items | join(", ") ~ " from read_parquet('" ~ glob
                ~ "', hive_partitioning = true, union_by_name = true)" -%}
        {%- else -%}
            {%- do items.append("cast(null as date) as dt") -%}
            {%- set body = "select " ~ items | join(", ") ~ " where false" -%}
        {%- endif -%}
        {%- do statements.append("create or replace view lake_raw." ~ dataset ~ " as " ~ body) -%}
    {%- endfor -%}
    {{ return(statements | join(";\n")) }}
{% endmacro %}

{% macro spark__create_lake_views() %}
    {#-
        Spark: a persistent view per dataset over `parquet.`<lake>/<dataset>``, which discovers
        the `dt=` partitions (a date column) and, with spark.sql.parquet.mergeSchema (set in the
        profile), unions files written with and without newer optional columns. Spark cannot
        test for a folder from SQL: the caller says which datasets have no file yet with var
        `lake_missing_datasets` (tracehouse.engines passes it; by hand, default: none missing).
    -#}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set missing = var('lake_missing_datasets', []) -%}
    {%- set statements = ["create schema if not exists lake_raw"] -%}
    {%- for dataset in ['spans', 'feedback', 'annotations'] -%}
        {%- set location = "parquet.`" ~ lake_path() ~ "/" ~ dataset ~ "`" -%}
        {%- set present = [] -%}
        {%- if dataset not in missing -%}
            {%- set described = run_query("describe query select * from " ~ location) -%}
            {%- for name in described.columns[0].values() -%}{%- do present.append(name) -%}{%- endfor -%}
        {%- endif -%}
        {%- set items = [] -%}
        {%- for column, logical in contract_columns(dataset) -%}
            {%- if column in present -%}
                {%- do items.append("cast(`" ~ column ~ "` as " ~ sql_type(logical) ~ ") as `" ~ column ~ "`") -%}
            {%- else -%}
                {%- do items.append("cast(null as " ~ sql_type(logical) ~ ") as `" ~ column ~ "`") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if present -%}
            {%- do items.append("cast(dt as date) as dt") -%}
            {%- set body = "select " ~ items | join(", ") ~ " from " ~ location -%}
        {%- else -%}
            {%- do items.append("cast(null as date) as dt") -%}
            {%- set body = "select " ~ items | join(", ") ~ " where false" -%}
        {%- endif -%}
        {%- do statements.append("create or replace view lake_raw." ~ dataset ~ " as " ~ body) -%}
    {%- endfor -%}
    {#- Spark SQL runs one statement per call: run them here, leave the hook a no-op. -#}
    {%- for statement in statements -%}{%- do run_query(statement) -%}{%- endfor -%}
    {{ return('select 1') }}
{% endmacro %}

{% macro default__create_lake_views() %}
    {{ exceptions.raise_compiler_error(
        "tracehouse has no lake views for adapter '" ~ adapter.type() ~ "' yet: add a macro `"
        ~ adapter.type() ~ "__create_lake_views` that exposes " ~ lake_path()
        ~ "/<dataset>/dt=*/*.parquet as lake_raw.<dataset> with the contract's columns"
    ) }}
{% endmacro %}
