{% macro apply_temp_disk_limit() %}
    {#-
        on-run-start: DuckDB's cap on the build's temp files (max_temp_directory_size) from
        TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE. `tracehouse run` sets it to half the free space of the
        warehouse's filesystem (tracehouse.resources.temp_limit), so a build that spills leaves
        room for the lake to keep landing; unset (a bare `dbt build`), DuckDB's own default
        applies (90 % of the free space). Other engines: nothing.
    -#}
    {{ return(adapter.dispatch('apply_temp_disk_limit', 'tracehouse')()) }}
{% endmacro %}

{% macro default__apply_temp_disk_limit() %}{{ return('') }}{% endmacro %}

{% macro duckdb__apply_temp_disk_limit() %}
    {%- set size = env_var('TRACEHOUSE_DUCKDB_MAX_TEMP_SIZE', '') | replace("'", "") | trim -%}
    {%- if size -%}
    set max_temp_directory_size = '{{ size }}'
    {%- endif -%}
{% endmacro %}
