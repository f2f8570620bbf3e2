{% macro span_types_unioned(span_types, columns, where=none) %}
    {#-
        The spans of some span types with some columns, one `union all` branch per staging
        span-type view (`stg_lake__<span_type>_spans`): a column that is an envelope column or
        one of the span type's attribute keys is taken as it is, any other is a typed NULL. A
        trace rollup reads only the span types it needs this way, so each span type's attributes
        JSON is parsed only by the models that use it. `where` (SQL over the view's columns, e.g.
        a trace filter of an incremental run) is applied in every branch.
    -#}
    {%- set envelope = {} -%}
    {%- for column, logical in contract_columns('spans') -%}
        {%- do envelope.update({column: logical}) -%}
    {%- endfor -%}
    {%- set attribute_types = {} -%}
    {%- for span_type in contract_enum('span_type') -%}
        {%- for key, logical in contract_attribute_keys(span_type) if key not in attribute_types -%}
            {%- do attribute_types.update({key: logical}) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- for span_type in span_types %}
    {%- set own_keys = contract_attribute_keys(span_type) | map('first') | list %}
    select
        {%- for column in columns %}
        {% if column in envelope or column in own_keys -%}
        {{ column }}
        {%- else -%}
        cast(null as {{ sql_type(attribute_types[column]) }}) as {{ column }}
        {%- endif %}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ ref('stg_lake__' ~ span_type ~ '_spans') }}
    {%- if where %}
    where {{ where }}
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endmacro %}
