{{
    config(
        materialized='incremental',
        unique_key='span_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    Every span once, with its typed attributes (the union of the 13 per-type staging models:
    one column per attribute key, NULL where the key is not one of the span type's) and its
    cost. This is the one place the attributes JSON is parsed in a build: everything downstream
    reads this table. Incremental per span: a run prices the spans landed since the newest
    ingest_time it has minus the lookback, and replaces them by span_id (a span's row depends
    only on the span and the price seed; change model_prices -> run with --full-refresh).
-#}
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
    {%- if is_incremental() %}
    where {{ newer_than_watermark('ingest_time') }}
    {%- endif %}
),

{% endfor %}
model_prices as (
    select * from {{ ref('model_prices') }}
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

prices_in_force as (
    {#-
        One row per model and price window [effective_from_at, effective_to_at), plus an
        unpriced window before each model's first price, so that every span of a listed model
        matches exactly one window: an equality (hash) join on model_name and a filter, rather
        than a range join that would sort the wide span rows.
    -#}
    select
        model_name,
        input_usd_per_1m,
        output_usd_per_1m,
        cached_input_usd_per_1m,
        cast(effective_from as {{ sql_type('timestamp') }}) as effective_from_at,
        cast(
            lead(effective_from) over (partition by model_name order by effective_from)
            as {{ sql_type('timestamp') }}
        ) as effective_to_at,
        true as is_price_window
    from model_prices
    union all
    select
        model_name,
        null as input_usd_per_1m,
        null as output_usd_per_1m,
        null as cached_input_usd_per_1m,
        null as effective_from_at,
        cast(min(effective_from) as {{ sql_type('timestamp') }}) as effective_to_at,
        false as is_price_window
    from model_prices
    group by model_name
),

priced as (
    select
        unioned.*,
        coalesce(prices_in_force.is_price_window, false) as is_price_found,
        (
            (coalesce(unioned.input_tokens, 0) - coalesce(unioned.cached_tokens, 0))
                * prices_in_force.input_usd_per_1m
            + coalesce(unioned.cached_tokens, 0) * prices_in_force.cached_input_usd_per_1m
            + coalesce(unioned.output_tokens, 0) * prices_in_force.output_usd_per_1m
        ) / 1000000.0 as priced_cost_usd
    from unioned
    left join prices_in_force
        on unioned.model_name = prices_in_force.model_name
    where prices_in_force.model_name is null
        or (
            (prices_in_force.effective_from_at is null
                or unioned.event_time >= prices_in_force.effective_from_at)
            and (prices_in_force.effective_to_at is null
                or unioned.event_time < prices_in_force.effective_to_at)
        )
),

final as (
    select
        span_id,
        trace_id,
        parent_span_id,
        parent_span_id is null as is_root,
        span_type,
        operation_name,
        status,
        event_time,
        end_time,
        duration_ms,
        ingest_time,
        {%- for column in envelope if column not in (
            'span_id', 'trace_id', 'parent_span_id', 'span_type', 'operation_name', 'status',
            'event_time', 'end_time', 'duration_ms', 'ingest_time') %}
        {{ column }},
        {%- endfor %}
        {%- for key in attribute_order %}
        {{ key }},
        {%- endfor %}
        case
            when cost_usd_estimate is not null then cost_usd_estimate
            when is_price_found then priced_cost_usd
        end as cost_usd,
        case
            when cost_usd_estimate is not null then 'estimate'
            when is_price_found then 'price_table'
            when coalesce(input_tokens, 0) + coalesce(output_tokens, 0) > 0 then 'unpriced'
            else 'no_usage'
        end as cost_source,
        cost_usd_estimate is null
            and not is_price_found
            and coalesce(input_tokens, 0) + coalesce(output_tokens, 0) > 0
            as is_unpriced
    from priced
)

select * from final
