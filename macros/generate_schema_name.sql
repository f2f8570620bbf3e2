{#- Layers get their own schema, without the target's prefix: staging, intermediate, marts.
    On the readers' target `published` the marts are the views of the publication's
    marts.duckdb, which live in its default schema (`main`). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.name == 'published' and custom_schema_name | trim == 'marts' -%}
        main
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
