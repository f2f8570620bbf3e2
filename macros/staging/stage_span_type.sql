{% macro stage_span_type(span_type) %}
    {#-
        The body of `stg_lake__<span_type>_spans`: the deduplicated spans of one span type, with
        the envelope columns as they are and the attributes JSON parsed once into one typed column
        per contract key. An attribute key that is also an envelope column (embedding's
        input_tokens) fills the envelope column where the envelope left it empty.
    -#}
    {%- set envelope = [] -%}
    {%- for column, logical in contract_columns('spans') if column not in ('attributes', 'schema_version') -%}
        {%- do envelope.append(column) -%}
    {%- endfor -%}
    {%- set keys = contract_attribute_keys(span_type) | map('first') | list -%}
    {#- a row is a function of its span alone: data tests slice by the spans written (test_slices.sql) -#}
    {{ config(meta={'test_slice': 'span_id'}) }}
with

spans as (
    select * from {{ ref('base_lake__spans') }}
    where span_type = '{{ span_type }}'
),

parsed as (
    select
        *,
        {{ parse_span_attributes('attributes', span_type) }} as attrs
    from spans
),

final as (
    select
        {%- for column in envelope %}
        {% if column in keys -%}
        coalesce({{ column }}, attrs.{{ column }}) as {{ column }},
        {%- else -%}
        {{ column }},
        {%- endif -%}
        {%- endfor %}
        {{ span_attribute_columns(span_type, 'attrs', skip=envelope) }}
    from parsed
)

select * from final
{% endmacro %}
