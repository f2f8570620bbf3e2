{#-
    Engine-specific SQL lives behind these dispatched macros: `duckdb__` for the embedded
    default, `spark__` for Spark SQL; a `default__` is ANSI SQL or a compile error naming the
    adapter that lacks a version (`not_ported`). Another engine only needs its own versions.
-#}

{% macro sql_type(logical) %}
    {{ return(adapter.dispatch('sql_type', 'tracehouse')(logical)) }}
{% endmacro %}

{% macro duckdb__sql_type(logical) %}
    {%- set types = {
        'str': 'varchar', 'num': 'double', 'int': 'bigint', 'bool': 'boolean',
        'timestamp': 'timestamptz', 'obj': 'json',
        'list_str': 'varchar[]', 'list_num': 'double[]',
        'list_obj': 'struct(chunk_id varchar, reason varchar)[]',
        'list_artifact_ref': 'struct(artifact_id varchar, kind varchar, uri varchar, privacy_class varchar, bytes bigint, sha256 varchar)[]',
    } -%}
    {{ return(types[logical]) }}
{% endmacro %}

{% macro spark__sql_type(logical) %}
    {%- set types = {
        'str': 'string', 'num': 'double', 'int': 'bigint', 'bool': 'boolean',
        'timestamp': 'timestamp', 'obj': 'string',
        'list_str': 'array<string>', 'list_num': 'array<double>',
        'list_obj': 'array<struct<chunk_id: string, reason: string>>',
        'list_artifact_ref': 'array<struct<artifact_id: string, kind: string, uri: string, privacy_class: string, bytes: bigint, sha256: string>>',
    } -%}
    {{ return(types[logical]) }}
{% endmacro %}
{% macro default__sql_type(logical) %}{{ not_ported('sql_type') }}{% endmacro %}


{% macro parse_span_attributes(column, span_type) %}
    {#- Parse a span's attributes JSON once into a struct with one typed field per contract key. -#}
    {{ return(adapter.dispatch('parse_span_attributes', 'tracehouse')(column, span_type)) }}
{% endmacro %}

{% macro duckdb__parse_span_attributes(column, span_type) %}
    {%- set json_types = {
        'str': '"VARCHAR"', 'num': '"DOUBLE"', 'int': '"BIGINT"', 'bool': '"BOOLEAN"',
        'obj': '"JSON"', 'list_str': '["VARCHAR"]', 'list_num': '["DOUBLE"]',
        'list_obj': '[{"chunk_id": "VARCHAR", "reason": "VARCHAR"}]',
    } -%}
    {%- set fields = [] -%}
    {%- for key, logical in contract_attribute_keys(span_type) -%}
        {%- do fields.append('"' ~ key ~ '": ' ~ json_types[logical]) -%}
    {%- endfor -%}
    json_transform({{ column }}, '{{ "{" ~ fields | join(", ") ~ "}" }}')
{%- endmacro %}

{% macro spark__parse_span_attributes(column, span_type) %}
    {%- set fields = [] -%}
    {%- for key, logical in contract_attribute_keys(span_type) -%}
        {%- do fields.append('`' ~ key ~ '` ' ~ sql_type(logical)) -%}
    {%- endfor -%}
    from_json({{ column }}, '{{ fields | join(", ") }}')
{%- endmacro %}
{% macro default__parse_span_attributes(column, span_type) %}{{ not_ported('parse_span_attributes') }}{% endmacro %}


{% macro span_attribute_columns(span_type, struct_column='attrs', skip=[]) %}
    {#- One select item per contract attribute key: `attrs.key as key`. -#}
    {%- for key, logical in contract_attribute_keys(span_type) if key not in skip %}
        {{ struct_column }}.{{ key }} as {{ key }}{{ "," if not loop.last }}
    {%- endfor %}
{%- endmacro %}
