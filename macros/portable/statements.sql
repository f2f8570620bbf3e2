{#-
    Statements that engines spell differently: how several statements run from one hook or
    `run_query`, how rows are deleted, how a small bookkeeping table is created. The callers build
    lists of statements; the engine decides how to carry them out.
-#}

{% macro run_statements(statements) %}
    {#-
        SQL that runs `statements` (a list) when a hook or `run_query` executes it. Most engines
        take them as one `;`-separated string; Spark SQL runs one statement per call, so its
        version runs them itself and returns a no-op.
    -#}
    {{ return(adapter.dispatch('run_statements', 'tracehouse')(statements)) }}
{% endmacro %}

{% macro default__run_statements(statements) %}
    {#- ANSI SQL: statements separated by semicolons. -#}
    {{ return(statements | join(';\n')) }}
{% endmacro %}


{% macro delete_statements(relation, condition) %}
    {#- The statements (a list) that delete the rows of `relation` where `condition` holds. -#}
    {{ return(adapter.dispatch('delete_statements', 'tracehouse')(relation, condition)) }}
{% endmacro %}

{% macro default__delete_statements(relation, condition) %}
    {#- ANSI SQL. -#}
    {{ return(['delete from ' ~ relation ~ ' where ' ~ condition]) }}
{% endmacro %}


{% macro create_table_statement(relation, columns) %}
    {#-
        `create table if not exists` for a small bookkeeping table; `columns` is a list of
        (name, logical type) pairs, logical types as in `sql_type`.
    -#}
    {{ return(adapter.dispatch('create_table_statement', 'tracehouse')(relation, columns)) }}
{% endmacro %}

{% macro default__create_table_statement(relation, columns) %}
    {#- ANSI SQL (the column types come from the engine's `sql_type`). -#}
    {%- set items = [] -%}
    {%- for name, logical in columns -%}{%- do items.append(name ~ ' ' ~ sql_type(logical)) -%}{%- endfor -%}
    {{ return('create table if not exists ' ~ relation ~ ' (' ~ items | join(', ') ~ ')') }}
{% endmacro %}


{% macro drop_retired_columns(columns) %}
    {#-
        Pre-hook of an incremental model that no longer computes `columns` (a list): drop them
        from `{{ this }}` if a warehouse built by an older version still has them, so the next
        incremental run equals a full refresh without one. Nothing when the table is new or
        already without them. ANSI `alter table ... drop column`; engines whose tables cannot
        drop a column (Spark's parquet tables) keep them until `--full-refresh`.
    -#}
    {%- if not execute or model.config.materialized != 'incremental' -%}{{ return('') }}{%- endif -%}
    {%- set relation = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- if relation is none -%}{{ return('') }}{%- endif -%}
    {%- set present = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {%- set retired = columns | select('in', present) | list -%}
    {%- if not retired -%}{{ return('') }}{%- endif -%}
    {{ return(adapter.dispatch('drop_retired_columns', 'tracehouse')(relation, retired)) }}
{% endmacro %}

{% macro default__drop_retired_columns(relation, columns) %}
    {%- set statements = [] -%}
    {%- for column in columns -%}
        {%- do statements.append('alter table ' ~ relation ~ ' drop column ' ~ column) -%}
    {%- endfor -%}
    {{ return(run_statements(statements)) }}
{% endmacro %}

{% macro spark__drop_retired_columns(relation, columns) %}
    {{ return('') }}
{% endmacro %}
