{% macro priced_spans(relation) %}
    {#-
        The rows of `relation` (a CTE or table with model_name, event_time, input_tokens,
        output_tokens, cached_tokens, cost_usd_estimate) with their cost: `cost_usd`,
        `cost_source`, `is_unpriced`, plus the helper columns `is_price_found` and
        `priced_cost_usd` (select the columns you need). cost_usd_estimate where given, else the
        model_prices row in force at the span's start: ((input - cached) x input + cached x
        cached_input + output x output) per 1M tokens. The one place for the rule:
        int_spans_priced (the narrow cost per span the trace rollups sum) and fct_spans (which
        prices inline, a hash join with the small price table, instead of joining millions of
        priced rows back) compute the same values.

        Prices in force: one row per model and price window [effective_from_at,
        effective_to_at), plus an unpriced window before each model's first price, so that every
        span of a listed model matches exactly one window: an equality (hash) join on model_name
        and a filter, rather than a range join that would sort the span rows.
    -#}
    select
        priced.*,
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
    from (
        select
            {{ relation }}.*,
            coalesce(prices_in_force.is_price_window, false) as is_price_found,
            (
                (coalesce({{ relation }}.input_tokens, 0) - coalesce({{ relation }}.cached_tokens, 0))
                    * prices_in_force.input_usd_per_1m
                + coalesce({{ relation }}.cached_tokens, 0) * prices_in_force.cached_input_usd_per_1m
                + coalesce({{ relation }}.output_tokens, 0) * prices_in_force.output_usd_per_1m
            ) / 1000000.0 as priced_cost_usd
        from {{ relation }}
        left join (
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
            from {{ ref('model_prices') }}
            union all
            select
                model_name,
                null as input_usd_per_1m,
                null as output_usd_per_1m,
                null as cached_input_usd_per_1m,
                null as effective_from_at,
                cast(min(effective_from) as {{ sql_type('timestamp') }}) as effective_to_at,
                false as is_price_window
            from {{ ref('model_prices') }}
            group by model_name
        ) as prices_in_force
            on {{ relation }}.model_name = prices_in_force.model_name
        where prices_in_force.model_name is null
            or (
                (prices_in_force.effective_from_at is null
                    or {{ relation }}.event_time >= prices_in_force.effective_from_at)
                and (prices_in_force.effective_to_at is null
                    or {{ relation }}.event_time < prices_in_force.effective_to_at)
            )
    ) as priced
{%- endmacro %}
