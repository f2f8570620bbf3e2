{#-
    on-run-end: after a build on an engine whose tables are not in the warehouse's DuckDB file,
    write every mart as Parquet to `var('marts_export_dir')/<mart>/` (part files), so that checks,
    detection and publish read the same marts whichever engine built them
    (tracehouse.engines.import_marts loads them). Off unless the var is set.
-#}

{% macro export_marts() %}
    {{ return(adapter.dispatch('export_marts', 'tracehouse')()) }}
{% endmacro %}

{% macro default__export_marts() %}
    {%- if var('marts_export_dir', none) -%}
        {{ not_ported('export_marts') }}
    {%- endif -%}
    {{ return('') }}
{% endmacro %}

{% macro duckdb__export_marts() %}
    {#- The marts are in the DuckDB file already: publish reads them there. -#}
    {{ return('') }}
{% endmacro %}

{% macro spark__export_marts() %}
    {%- set folder = var('marts_export_dir', none) -%}
    {%- if not execute or not folder -%}{{ return('') }}{%- endif -%}
    {%- for node in graph.nodes.values() | sort(attribute='name')
        if node.resource_type == 'model' and node.schema == 'marts'
        and node.config.materialized != 'ephemeral' -%}
        {%- set relation = adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias) -%}
        {%- if relation is not none -%}
            {%- do run_query(
                "insert overwrite directory '" ~ folder ~ "/" ~ node.alias ~ "' using parquet select * from "
                ~ relation
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('') }}
{% endmacro %}
