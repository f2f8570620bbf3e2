{{
    config(
        materialized='incremental',
        unique_key='span_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
{#-
    Every span once with its cost, and nothing else: span_id, trace_id, span_type, ingest_time,
    cost_usd, cost_source, is_unpriced. Narrow on purpose: writing a table costs per column and
    row, and the typed attributes are read where they are needed, from the staging span-type
    views (fct_spans puts them together with this cost). Pricing needs the envelope (model,
    tokens, estimate, start; from base_lake__spans), llm `cached_tokens` and embedding
    `input_tokens` (an attribute that fills the envelope column), so llm and embedding spans come
    from their staging views and every other span type straight from base_lake__spans.
    Incremental per span: a run prices the spans landed since the newest ingest_time it has minus
    the lookback, and replaces them by span_id (a span's row depends only on the span and the
    price seed; change model_prices -> run with --full-refresh).
-#}

with

other_spans as (
    select
        span_id,
        trace_id,
        span_type,
        event_time,
        ingest_time,
        model_name,
        input_tokens,
        output_tokens,
        cast(null as {{ sql_type('int') }}) as cached_tokens,
        cost_usd_estimate
    from {{ ref('base_lake__spans') }}
    where span_type not in ('llm', 'embedding')
    {%- if is_incremental() %}
        and {{ newer_than_watermark('ingest_time') }}
    {%- endif %}
),

llm_spans as (
    select
        span_id,
        trace_id,
        span_type,
        event_time,
        ingest_time,
        model_name,
        input_tokens,
        output_tokens,
        cached_tokens,
        cost_usd_estimate
    from {{ ref('stg_lake__llm_spans') }}
    {%- if is_incremental() %}
    where {{ newer_than_watermark('ingest_time') }}
    {%- endif %}
),

embedding_spans as (
    select
        span_id,
        trace_id,
        span_type,
        event_time,
        ingest_time,
        model_name,
        input_tokens,
        output_tokens,
        cast(null as {{ sql_type('int') }}) as cached_tokens,
        cost_usd_estimate
    from {{ ref('stg_lake__embedding_spans') }}
    {%- if is_incremental() %}
    where {{ newer_than_watermark('ingest_time') }}
    {%- endif %}
),

model_prices as (
    select * from {{ ref('model_prices') }}
),

unioned as (
    select * from other_spans
    union all
    select * from llm_spans
    union all
    select * from embedding_spans
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
        span_type,
        ingest_time,
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
