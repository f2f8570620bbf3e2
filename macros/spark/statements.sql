{#- Spark versions of macros/portable/statements.sql. -#}

{% macro spark__run_statements(statements) %}
    {#- Spark SQL runs one statement per call: run all but the last here, return the last. -#}
    {%- if not statements -%}{{ return('') }}{%- endif -%}
    {%- if execute -%}
        {%- for statement in statements[:-1] -%}{%- do run_query(statement) -%}{%- endfor -%}
    {%- endif -%}
    {{ return(statements[-1]) }}
{% endmacro %}


{% macro spark__delete_statements(relation, condition) %}
    {#-
        Delta, Iceberg, Hudi: `delete`. Parquet has no DELETE: copy on write, through a helper
        table (Spark cannot overwrite a table the same query reads), keeping every row for which
        the condition is not true.
    -#}
    {%- set file_format = config.get('file_format', default='parquet') if config is defined else 'parquet' -%}
    {%- if file_format in ['delta', 'iceberg', 'hudi'] -%}
        {{ return(['delete from ' ~ relation ~ ' where ' ~ condition]) }}
    {%- endif -%}
    {#- Most calls delete nothing (no vanished day): then one read instead of four writes. -#}
    {%- if execute -%}
        {%- set hits = run_query(
            'select count(*) from ' ~ relation ~ ' where coalesce(' ~ condition ~ ', false)'
        ).columns[0].values()[0] -%}
        {%- if hits == 0 -%}{{ return([]) }}{%- endif -%}
    {%- endif -%}
    {%- if relation is string -%}
        {%- set kept = relation ~ '__dbt_kept' -%}
    {%- else -%}
        {%- set kept = relation.incorporate(path={'identifier': relation.identifier ~ '__dbt_kept'}) -%}
    {%- endif -%}
    {{ return([
        'drop table if exists ' ~ kept,
        'create table ' ~ kept ~ ' using parquet as select * from ' ~ relation
            ~ ' where not coalesce(' ~ condition ~ ', false)',
        'insert overwrite table ' ~ relation ~ ' select * from ' ~ kept,
        'drop table if exists ' ~ kept,
    ]) }}
{% endmacro %}


{% macro spark__create_table_statement(relation, columns) %}
    {%- set items = [] -%}
    {%- for name, logical in columns -%}{%- do items.append(name ~ ' ' ~ sql_type(logical)) -%}{%- endfor -%}
    {{ return('create table if not exists ' ~ relation ~ ' (' ~ items | join(', ') ~ ') using parquet') }}
{% endmacro %}


{#-
    Watermarks on Spark (macros/incremental/loaded.sql). A Parquet table has no DELETE, so a
    watermark update is a copy on write of the table; models build in parallel (dbt threads), and
    two copies on write of one shared table would lose one update. So each model keeps its
    watermarks in tables of its own, `tracehouse_watermarks[_pending]__<model>`, created when the
    model first needs them; only that model's thread writes them.
-#}

{% macro spark__watermark_table(kind='done') %}
    {{ return(target.schema ~ '.tracehouse_watermarks' ~ ('_pending' if kind == 'pending' else '')
        ~ '__' ~ this.identifier) }}
{% endmacro %}

{% macro spark__create_watermark_tables() %}
    {#- on-run-start: only the schema; the per-model tables come with their model. -#}
    {{ return('create schema if not exists ' ~ target.schema) }}
{% endmacro %}

{% macro spark__ensure_watermark_tables() %}
    {%- if execute -%}
        {%- for statement in watermark_table_statements() -%}{%- do run_query(statement) -%}{%- endfor -%}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}


{% macro spark_watermark_values(rows) %}
    {#- `values (...), (...)` for (upstream, loaded_at) pairs of this model. -#}
    {%- set items = [] -%}
    {%- for upstream, loaded_at in rows -%}
        {%- do items.append("('" ~ this.identifier ~ "', '" ~ upstream ~ "', " ~ stamp_literal(loaded_at) ~ ")") -%}
    {%- endfor -%}
    {{ return('values ' ~ items | join(', ')) }}
{% endmacro %}

{% macro spark_replace_watermarks(table, rows) %}
    {#- The statement that makes `table` (this model's own) hold exactly `rows`. -#}
    {%- if rows -%}
        {{ return('insert overwrite table ' ~ table ~ ' ' ~ spark_watermark_values(rows)) }}
    {%- endif -%}
    {{ return('truncate table ' ~ table) }}
{% endmacro %}

{% macro spark__set_pending_watermark(upstream, stamp) %}
    {#- Read this model's few pending rows, write them back with `upstream` replaced: two statements. -#}
    {%- set table = watermark_table('pending') -%}
    {%- set kept = run_query(
        "select upstream, loaded_at from " ~ table ~ " where upstream <> '" ~ upstream ~ "'"
    ) -%}
    {%- set rows = [] -%}
    {%- for row in kept.rows -%}{%- do rows.append((row[0], row[1])) -%}{%- endfor -%}
    {%- do rows.append((upstream, stamp)) -%}
    {%- do run_query(spark_replace_watermarks(table, rows)) -%}
    {{ return('') }}
{% endmacro %}

{% macro spark__record_watermarks() %}
    {#-
        The same steps as the default (macros/incremental/loaded.sql), computed here from the few
        rows of this model's tables and written back with one `insert overwrite` per table.
    -#}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- do spark__ensure_watermark_tables() -%}
    {%- set pending = {} -%}
    {%- for row in run_query("select upstream, loaded_at from " ~ watermark_table('pending')).rows -%}
        {%- do pending.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {%- if not pending -%}
        {#- A full build recorded no bound: the watermark is the newest stamp of each base table. -#}
        {%- set newest = [] -%}
        {%- for upstream, relation in watermarked_upstreams() -%}
            {%- do newest.append("select '" ~ upstream ~ "' as upstream, max(_loaded_at) as loaded_at from " ~ relation) -%}
        {%- endfor -%}
        {%- if newest -%}
            {%- for row in run_query(newest | join(' union all ')).rows if row[1] is not none -%}
                {%- do pending.update({row[0]: row[1]}) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endif -%}
    {%- set done = [] -%}
    {%- for row in run_query("select upstream, loaded_at from " ~ watermark_table()).rows
        if row[0] not in pending -%}
        {%- do done.append((row[0], row[1])) -%}
    {%- endfor -%}
    {%- for upstream in pending | sort -%}{%- do done.append((upstream, pending[upstream])) -%}{%- endfor -%}
    {{ return(run_statements([
        spark_replace_watermarks(watermark_table(), done),
        'truncate table ' ~ watermark_table('pending'),
    ])) }}
{% endmacro %}
