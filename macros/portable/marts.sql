{#-
    Portable helpers for the question marts (cost, latency, retrieval, tools, context, quality,
    failures, evals). Same convention as functions.sql: `duckdb__` for the embedded default,
    `spark__` for Spark SQL, `default__` ANSI SQL or a compile error (`not_ported`).
-#}

{% macro hash_fraction(expression, salt='') %}
    {#-
        A deterministic number in [0, 1) from `expression` (e.g. a trace_id): the first 32 bits
        of md5(expression || salt) over 2^32. Same input, same number, on every engine and every
        build; no random().
    -#}
    {{ return(adapter.dispatch('hash_fraction', 'tracehouse')(expression, salt)) }}
{% endmacro %}
{% macro duckdb__hash_fraction(expression, salt) -%}
    (cast(cast(('0x' || substr(md5(cast({{ expression }} as varchar) || '{{ salt }}'), 1, 8)) as bigint) as double) / 4294967296.0)
{%- endmacro %}
{% macro spark__hash_fraction(expression, salt) -%}
    (cast(conv(substr(md5(concat(cast({{ expression }} as string), '{{ salt }}')), 1, 8), 16, 10) as double) / 4294967296.0)
{%- endmacro %}
{% macro default__hash_fraction(expression, salt) %}{{ not_ported('hash_fraction') }}{% endmacro %}


{% macro unnest_join(list_expression, alias) %}
    {#-
        A FROM-clause fragment that repeats each row once per element of `list_expression`;
        the element is `<alias>.value`. Rows with an empty or NULL list disappear (inner).
        Put it right after the relation it unnests, before any other join.
    -#}
    {{ return(adapter.dispatch('unnest_join', 'tracehouse')(list_expression, alias)) }}
{% endmacro %}
{% macro duckdb__unnest_join(list_expression, alias) -%}
    cross join unnest({{ list_expression }}) as {{ alias }}(value)
{%- endmacro %}
{% macro spark__unnest_join(list_expression, alias) -%}
    {#- A lateral generator, so other joins may follow (LATERAL VIEW must come after them). -#}
    cross join lateral explode({{ list_expression }}) as {{ alias }}(value)
{%- endmacro %}
{% macro default__unnest_join(list_expression, alias) -%}
    {#- ANSI SQL. -#}
    cross join unnest({{ list_expression }}) as {{ alias }}(value)
{%- endmacro %}


{% macro flatten_list_agg(expression, order_by) %}
    {#- Aggregate: the concatenation of the group's lists (`expression` is a list column). -#}
    {{ return(adapter.dispatch('flatten_list_agg', 'tracehouse')(expression, order_by)) }}
{% endmacro %}
{% macro duckdb__flatten_list_agg(expression, order_by) -%}
    flatten(list({{ expression }} order by {{ order_by }}) filter (where {{ expression }} is not null))
{%- endmacro %}
{% macro spark__flatten_list_agg(expression, order_by) -%}
    {#- collect_list has no ORDER BY: sort (order key struct, list) pairs, then concatenate. -#}
    {#- NULL when no row has a list, as DuckDB's filtered list() gives. -#}
    case when count({{ expression }}) > 0 then flatten(transform(
        array_sort(collect_list(case when {{ expression }} is not null then struct(struct({{ order_by }}) as k, {{ expression }} as v) end)),
        x -> x.v
    )) end
{%- endmacro %}
{% macro default__flatten_list_agg(expression, order_by) %}{{ not_ported('flatten_list_agg') }}{% endmacro %}


{% macro days_between(start_date, end_date) %}
    {#- Whole days from start_date to end_date (dates): end - start. -#}
    {{ return(adapter.dispatch('days_between', 'tracehouse')(start_date, end_date)) }}
{% endmacro %}
{% macro duckdb__days_between(start_date, end_date) -%}
    date_diff('day', cast({{ start_date }} as date), cast({{ end_date }} as date))
{%- endmacro %}
{% macro spark__days_between(start_date, end_date) -%}
    datediff(cast({{ end_date }} as date), cast({{ start_date }} as date))
{%- endmacro %}
{% macro default__days_between(start_date, end_date) %}{{ not_ported('days_between') }}{% endmacro %}


{% macro safe_divide(numerator, denominator) -%}
    {#- numerator / denominator as a double; NULL when the denominator is 0 or NULL. ANSI. -#}
    (cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0))
{%- endmacro %}


{% macro none_if_null(expression) -%}
    {#-
        The marts' rule for dimension values: a missing value is grouped as the literal
        '(none)', never NULL, so that keys are testable and BI filters see it. ANSI.
    -#}
    coalesce(cast({{ expression }} as {{ sql_type('str') }}), '(none)')
{%- endmacro %}


{#-
    Incremental daily marts (agg_*): the warehouse core's lineage pattern (macros/incremental/
    lineage.sql, loaded.sql) applied per day. Every row carries its day's lineage (the newest
    span / feedback / annotation ingest of the day's traces) and the day's trace count. A run
    rebuilds, from all their traces, the days of every trace that the base tables wrote a row of
    since the model's watermark (loaded.sql), plus every stored day whose trace count changed (a trace
    whose root landed late moved to another day), and replaces them (delete+insert on
    trace_date). A stored day with no trace left is deleted by the post-hook
    `delete_vanished_days()`. ANSI SQL. Each model states its own config:

        {{ config(materialized='incremental', unique_key='trace_date',
                  incremental_strategy='delete+insert', on_schema_change='append_new_columns',
                  post_hook=["{{ delete_vanished_days() }}"]) }}
-#}

{% macro mart_days_to_build(requests_relation, sources=['spans', 'feedback', 'annotations']) %}
    {#-
        The body of a CTE: the trace_dates an incremental run must rebuild. A mart that reads
        nothing of feedback or annotations passes sources=['spans']: late feedback for an old
        day does not rebuild it. `requests_relation` is fct_requests itself (a ref), not a CTE
        over it: only its trace_id and trace_date are read here, so the wide table is scanned
        narrow and never materialised whole as a CTE read twice.
    -#}
    select trace_date
    from {{ requests_relation }}
    where trace_id in ({{ traces_loaded(sources) }})
    union
    select stored.trace_date
    from (
        select trace_date, max(day_trace_count) as day_trace_count
        from {{ this }}
        group by trace_date
    ) as stored
    left join (
        select trace_date, count(*) as day_trace_count
        from {{ requests_relation }}
        group by trace_date
    ) as current_days
        on stored.trace_date = current_days.trace_date
    where current_days.day_trace_count is null
        or current_days.day_trace_count <> stored.day_trace_count
{% endmacro %}


{% macro mart_requests_in_scope(requests_relation, sources=['spans', 'feedback', 'annotations']) %}
    {#-
        The body of a CTE: the requests of the days this run builds (all of them on a full
        build). Pass the relation (`ref('fct_requests')`), not a CTE reading it.
    -#}
    {{- loaded_base_refs() }}
    select *
    from {{ requests_relation }}
    {%- if is_incremental() %}
    where trace_date in ({{ mart_days_to_build(requests_relation, sources) }})
    {%- endif %}
{% endmacro %}


{% macro mart_span_floor(requests_relation, stamped_relation) -%}
    {#-
        A scalar subquery: the earliest UTC day on which any span of the traces in
        `requests_relation` (a CTE of the requests of the days this run builds) started, from
        int_traces_stamped's `span_dates` (every span's day, so a child span that started the
        day before its root counts). Marts that read spans of the days they build add
        `spans.event_time >= <this>` in an incremental run: base_lake__spans is appended in
        landing order, so its row groups are nearly day-ordered and the engine skips those of
        older days (DuckDB's zonemaps) instead of scanning every span to join it away. Every span of a trace in scope passes (event_time
        is required by the contract), so the result is unchanged. NULL (no span read) when no
        day is built. ANSI SQL.
    -#}
    (
        select min(span_days.value)
        from {{ stamped_relation }} as stamped
        {{ unnest_join('stamped.span_dates', 'span_days') }}
        where stamped.trace_id in (select trace_id from {{ requests_relation }})
    )
{%- endmacro %}


{% macro mart_span_floor_condition(event_time_expression, requests_relation='requests', scope_ctes=none) -%}
    {#-
        A WHERE condition over the spans of the requests in scope: `<event_time> >= <the span
        floor>` in an incremental run, `1 = 1` on a full build (every day is built).
        With `scope_ctes` (the text of the model's CTE definitions up to and including
        `requests_relation`), the floor is queried when the model compiles (its inputs are
        built by then) and written as a date literal: for a read the engine would otherwise
        filter only after a costly step (parsing the attributes of every span of a type).
    -#}
    {#-
        ref'd on every parse (is_incremental() is false then): dbt must know the dependency;
        not in a unit test (built in full, no fixture for it)
    -#}
    {%- set is_unit_test = in_unit_test() -%}
    {%- if not is_unit_test -%}{%- set stamped = ref('int_traces_stamped') -%}{%- endif -%}
    {%- if is_incremental() and not is_unit_test and scope_ctes is not none -%}
        {%- if not execute -%}{{ return('1 = 1') }}{%- endif -%}
        {%- set floor = run_query(
            'with ' ~ scope_ctes ~ ' select ' ~ mart_span_floor(requests_relation, stamped)
        ).columns[0].values()[0] -%}
        {%- if floor is none -%}
        1 = 0
        {%- else -%}
        {{ event_time_expression }} >= cast('{{ floor.strftime('%Y-%m-%d') }}' as date)
        {%- endif -%}
    {%- elif is_incremental() and not is_unit_test -%}
        {{ event_time_expression }} >= {{ mart_span_floor(requests_relation, stamped) }}
    {%- else -%}
        1 = 1
    {%- endif -%}
{%- endmacro %}


{% macro lineage_column(source_name) -%}
    {#- The lineage column of a source: spans -> last_span_ingest_at, and so on. -#}
    last_{{ {'spans': 'span', 'feedback': 'feedback', 'annotations': 'annotation'}[source_name] }}_ingest_at
{%- endmacro %}


{% macro mart_day_lineage(requests_relation, sources=['spans', 'feedback', 'annotations']) %}
    {#-
        The body of a CTE: per trace_date, the trace count and the newest ingest per source
        (of `sources`; last_ingest_at only with all three).
    -#}
    select
        trace_date,
        {%- for source_name in sources %}
        max({{ lineage_column(source_name) }})
            as {{ lineage_column(source_name) }},
        {%- endfor %}
        {%- if sources | length == 3 %}
        max(last_ingest_at) as last_ingest_at,
        {%- endif %}
        count(*) as day_trace_count
    from {{ requests_relation }}
    group by trace_date
{% endmacro %}


{% macro mart_lineage_columns(day_lineage_alias='day_lineage', sources=['spans', 'feedback', 'annotations']) %}
    {#- The lineage select items every incremental daily mart row carries (no trailing comma). -#}
    {{ day_lineage_alias }}.day_trace_count
    {%- for source_name in sources %},
    {{ day_lineage_alias }}.{{ lineage_column(source_name) }}
    {%- endfor %}
    {%- if sources | length == 3 %},
    {{ day_lineage_alias }}.last_ingest_at
    {%- endif %}
{%- endmacro %}


{% macro delete_vanished_days() %}
    {#- Post-hook: delete the stored days none of whose traces is still in fct_requests. -#}
    {{ delete_where(
        "trace_date not in (select distinct trace_date from " ~ ref('fct_requests') ~ ") "
        ~ and_not_archived('trace_date')
    ) }}
{% endmacro %}


{% macro exact_mean(expression, scale=12) -%}
    {#-
        avg() that does not depend on the order rows are added in (see exact_sum in
        warehouse.sql): an incremental build must equal a full refresh bit for bit. ANSI.
    -#}
    ({{ exact_sum(expression, scale) }} / nullif(count({{ expression }}), 0))
{%- endmacro %}


{% macro eval_candidates_by_day() %}
    {#-
        Whether fct_eval_candidates' incremental run rebuilds only the days whose inputs moved
        (true) or every day (the portable default: exact, as costly as a full build). Spark
        inlines the CTEs, and the day selection repeated under each of the model's ~20 reads of
        its requests made its planner run out of heap; DuckDB plans it in milliseconds.
    -#}
    {{ return(adapter.dispatch('eval_candidates_by_day', 'tracehouse')()) }}
{% endmacro %}
{% macro duckdb__eval_candidates_by_day() %}{{ return(true) }}{% endmacro %}
{% macro default__eval_candidates_by_day() %}{{ return(false) }}{% endmacro %}
