{{
    config(
        materialized=wide_view_materialization(),
    )
}}
{#-
    One row per span: the envelope, the typed attributes of every span type (NULL where the
    key is not the span type's), cost, and its place in the trace (offset from the trace start,
    the trace's start and date: the root's).

    A view, deliberately: the union of the 13 staging span-type views (typed attributes; each
    parses only its own span type's JSON, and a reader that selects no attribute of a type
    parses none), priced inline by `priced_spans` (the rule int_spans_priced applies: a hash
    join with the small price table, cheaper than joining millions of priced rows back) and
    placed on its trace by int_traces_enveloped (incremental by trace). Writing ~130 columns of every
    span into a table costs far more than computing them (DuckDB table writes are the build's
    cost), and it is only materialized when published. Its inputs are the staging views, the price seed and a table
    maintained by the incremental mechanism in docs/warehouse.md, so fct_spans after an incremental run equals
    fct_spans after a full refresh, row for row. `last_ingest_at` is the trace's newest span
    ingest (feedback and annotations do not change a span row).
-#}
{{ stamps_ref() }}
{%- set span_types = contract_enum('span_type') -%}
{%- set envelope = [] -%}
{%- for column, logical in contract_columns('spans') if column not in ('attributes', 'schema_version') -%}
    {%- do envelope.append(column) -%}
{%- endfor -%}
{%- set attribute_types = {} -%}
{%- set attribute_order = [] -%}
{%- for span_type in span_types -%}
    {%- for key, logical in contract_attribute_keys(span_type) if key not in envelope -%}
        {%- if key not in attribute_types -%}
            {%- do attribute_types.update({key: logical}) -%}
            {%- do attribute_order.append(key) -%}
        {%- endif -%}
    {%- endfor -%}
{%- endfor -%}

with

{% for span_type in span_types %}
{{ span_type }}_spans as (
    select * from {{ ref('stg_lake__' ~ span_type ~ '_spans') }}
),

{% endfor %}
traces as (
    select * from {{ ref('int_traces_enveloped') }}
),

unioned as (
    {%- for span_type in span_types %}
    {%- set own_keys = contract_attribute_keys(span_type) | map('first') | list %}
    select
        {%- for column in envelope %}
        {{ column }},
        {%- endfor %}
        {%- for key in attribute_order %}
        {% if key in own_keys -%}
        {{ key }}
        {%- else -%}
        cast(null as {{ sql_type(attribute_types[key]) }})
        {%- endif %} as {{ key }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ span_type }}_spans
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

priced as (
    {{ priced_spans('unioned') }}
),

final as (
    select
        priced.span_id,
        priced.trace_id,
        priced.parent_span_id,
        priced.parent_span_id is null as is_root,
        priced.span_type,
        priced.operation_name,
        priced.status,
        priced.event_time,
        priced.end_time,
        priced.duration_ms,
        priced.ingest_time,
        {%- for column in envelope if column not in (
            'span_id', 'trace_id', 'parent_span_id', 'span_type', 'operation_name', 'status',
            'event_time', 'end_time', 'duration_ms', 'ingest_time') %}
        priced.{{ column }},
        {%- endfor %}
        {%- for key in attribute_order %}
        priced.{{ key }},
        {%- endfor %}
        priced.cost_usd,
        priced.cost_source,
        priced.is_unpriced,
        traces.event_time as trace_started_at,
        traces.trace_date,
        {{ duration_ms_between('traces.event_time', 'priced.event_time') }} as offset_ms,
        traces.last_span_ingest_at as last_ingest_at
    from priced
    inner join traces
        on priced.trace_id = traces.trace_id
)

select * from final
