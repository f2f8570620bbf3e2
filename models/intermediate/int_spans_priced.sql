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
    Incremental per span: a run prices the spans base_lake__spans wrote since this model's
    watermark (macros/incremental/loaded.sql), and replaces them by span_id (a span's row depends only on the span and the
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
        and span_id in ({{ loaded_span_ids() }})
        and {{ span_days_predicate(span_ids=true) }}
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
    where span_id in ({{ loaded_span_ids(['llm']) }})
        and {{ span_days_predicate(span_ids=true) }}
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
    where span_id in ({{ loaded_span_ids(['embedding']) }})
        and {{ span_days_predicate(span_ids=true) }}
    {%- endif %}
),

unioned as (
    select * from other_spans
    union all
    select * from llm_spans
    union all
    select * from embedding_spans
),

priced as (
    {{ priced_spans('unioned') }}
),

final as (
    select
        span_id,
        trace_id,
        span_type,
        ingest_time,
        cost_usd,
        cost_source,
        is_unpriced
    from priced
)

select * from final
