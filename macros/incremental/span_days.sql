{#-
    Span-grain reads of an incremental run, pruned by day.

    A run that rebuilds the traces touched by new spans reads ALL the spans of those traces
    (`trace_id in T`), and a base table dedup reads the stored copies of the landed span ids.
    Span ids and trace ids are random: DuckDB cannot skip a row group by them, so such a read
    scans every row of every day. The span tables are appended in load order, i.e. by day, so a
    predicate on `event_time` covering exactly the UTC days the wanted spans lie on lets the
    zone maps skip every other day's row groups (OR-ed ranges are pushed into the scan too).

    The days D of the spans of the traces T a model's window touched (known at compile time):
    - the days of the spans stamped in the model's window (`_loaded_at` after its watermark:
      the end of the base table, read through zone maps), and
    - `span_dates` of T in `int_traces_stamped` (one small row per trace), which holds the days
      of every span of a trace stamped up to that model's own watermark on spans.
    Every span of T is in one or the other: stamped after the model's watermark (the first), or
    at or before it; the second covers those only when int_traces_stamped has taken in every
    span the model has (its watermark on spans >= the model's). When it lags (failed, never
    built with watermarks, or built after the model last ran) there is no day predicate: still
    exact, only a full scan. A span without an event_time is always read (`event_time is null`).
    DuckDB only (`duckdb__`); any other engine reads without a day predicate (exact).
-#}

{% macro span_days_predicate(sources=['spans'], stamps=none, span_ids=false) %}
    {#-
        A predicate on `event_time` (or `true`): the UTC days of every span of the traces with a
        row stamped after this model's watermark in the base tables of `sources`. `stamps`: the
        relation holding span_dates (default int_traces_stamped; int_traces_stamped passes
        `this`). `span_ids`: the read is of the window's spans themselves (`loaded_span_ids`),
        so their own days suffice (no trace lookup).
    -#}
    {{ return(adapter.dispatch('span_days_predicate', 'tracehouse')(sources, stamps, span_ids)) }}
{% endmacro %}

{% macro default__span_days_predicate(sources=['spans'], stamps=none, span_ids=false) %}
    {{ return('true') }}
{% endmacro %}

{% macro duckdb__span_days_predicate(sources=['spans'], stamps=none, span_ids=false) %}
    {%- if not execute or not is_incremental() -%}{{ return('true') }}{%- endif -%}
    {%- set bases = {} -%}
    {%- for upstream in (sources | list) + ['spans'] -%}
        {%- set relation = _base_relation(upstream) -%}
        {%- if relation is none -%}{{ return('true') }}{%- endif -%}
        {%- do bases.update({upstream: relation}) -%}
    {%- endfor -%}
    {%- set stamps = stamps if stamps is not none else _model_relation('int_traces_stamped') -%}
    {%- if stamps is none and not span_ids -%}{{ return('true') }}{%- endif -%}
    {%- do ensure_watermark_tables() -%}
    {%- set marks_sql -%}
        select '_newest', max(_loaded_at) from {{ bases['spans'] }}
        union all
        select upstream, max(loaded_at) from {{ watermark_table() }}
        where model_name = '{{ this.identifier }}' and upstream in ('{{ bases.keys() | join("', '") }}')
        group by upstream
        union all
        select '_stamps', max(loaded_at) from {{ watermark_table() }}
        where model_name = '{{ stamps.identifier if stamps is not none else "" }}' and upstream = 'spans'
    {%- endset -%}
    {%- set marks = {} -%}
    {%- for row in run_query(marks_sql) -%}{%- do marks.update({row[0]: row[1]}) -%}{%- endfor -%}
    {#- No watermark yet: the window is every row, so every day is read anyway. -#}
    {%- for upstream in sources -%}
        {%- if marks.get(upstream) is none -%}{{ return('true') }}{%- endif -%}
    {%- endfor -%}
    {%- set spans_done = marks.get('spans') -%}
    {%- if spans_done is none -%}{{ return('true') }}{%- endif -%}
    {%- set window_days -%}
        select {{ utc_date('event_time') }} as day from {{ bases['spans'] }}
        where _loaded_at > {{ stamp_literal(spans_done) }}
    {%- endset -%}
    {%- if span_ids -%}
        {{ return(_span_days_ranges(window_days, 'the days of the spans stamped in this window')) }}
    {%- endif -%}
    {#- int_traces_stamped must hold every span at or before this model's watermark on spans. -#}
    {%- set stamps_done = marks.get('_stamps') -%}
    {%- if stamps_done is none or stamps_done < spans_done -%}
        {{ return('true /* int_traces_stamped lags this model: no day predicate */') }}
    {%- endif -%}
    {%- set traces -%}
        {%- for upstream in sources %}
        select trace_id from {{ bases[upstream] }} where _loaded_at > {{ stamp_literal(marks[upstream]) }}
        {{ "union all" if not loop.last }}
        {%- endfor %}
    {%- endset -%}
    {#-
        When int_traces_stamped has taken in every span (built earlier in this run: the models
        ref it, `stamps_ref()`), each trace of T has a span stamped after the model's
        watermark, so its row there has `spans_loaded_at` after it too: the lookup reads only
        the end of the table (rows are rewritten, so appended, when their trace is touched).
    -#}
    {%- set recent = (stamps | string) != (this | string) and sources | list == ['spans'] and marks.get('_newest') is not none
        and stamps_done >= marks.get('_newest') -%}
    {%- set days -%}
        {{ window_days }}
        union
        select unnest(span_dates) from {{ stamps }} where trace_id in ({{ traces }})
        {%- if recent %} and spans_loaded_at > {{ stamp_literal(spans_done) }}{% endif %}
    {%- endset -%}
    {{ return(_span_days_ranges(
        days, 'the days of the spans of the traces touched, from ' ~ stamps ~ (' (rows stamped since)' if recent else '')
    )) }}
{% endmacro %}


{% macro base_span_days_predicate(landed_sql) %}
    {#-
        For the span base table's dedup: a predicate on `event_time` (or `true`) covering every
        stored copy of a span id in `landed_sql` (the new lake rows). A span id names one span of
        one trace, so its stored copy is a span of the landed row's trace: its day is in that
        trace's span_dates in int_traces_stamped, when that has taken in every stored span (its
        watermark on spans >= the newest stamp stored); plus the landed rows' own days.
    -#}
    {{ return(adapter.dispatch('base_span_days_predicate', 'tracehouse')(landed_sql)) }}
{% endmacro %}

{% macro default__base_span_days_predicate(landed_sql) %}
    {{ return('true') }}
{% endmacro %}

{% macro duckdb__base_span_days_predicate(landed_sql) %}
    {%- if not execute or not is_incremental() -%}{{ return('true') }}{%- endif -%}
    {%- set stamps = _model_relation('int_traces_stamped') -%}
    {%- if stamps is none -%}{{ return('true') }}{%- endif -%}
    {%- do ensure_watermark_tables() -%}
    {%- set synced = run_query(
        "select (select max(loaded_at) from " ~ watermark_table()
        ~ " where model_name = '" ~ stamps.identifier ~ "' and upstream = 'spans')"
        ~ " >= (select max(_loaded_at) from " ~ this ~ ")"
    ).columns[0].values()[0] -%}
    {%- if not synced -%}
        {{ return('true /* int_traces_stamped lags this table: no day predicate */') }}
    {%- endif -%}
    {%- set days -%}
        select {{ utc_date('event_time') }} as day from ({{ landed_sql }}) as landed
        union
        select unnest(span_dates) from {{ stamps }}
        where trace_id in (select trace_id from ({{ landed_sql }}) as landed)
    {%- endset -%}
    {{ return(_span_days_ranges(days, 'the days of the landed spans\' traces, from ' ~ stamps)) }}
{% endmacro %}


{% macro _span_days_ranges(days_sql, why) %}
    {#-
        `event_time is null or` the days selected by `days_sql` (one date column), as OR-ed
        half-open ranges of consecutive days: sargable, each pushed into the scan's zone maps.
    -#}
    {%- set days = run_query(
        'select distinct day from (' ~ days_sql ~ ') as days where day is not null order by day'
    ).columns[0].values() | list -%}
    {%- set ranges = [] -%}
    {%- for day in days -%}
        {%- if ranges and ranges[-1][1] == day -%}
            {%- do ranges[-1].pop() -%}
            {%- do ranges[-1].append(day + modules.datetime.timedelta(days=1)) -%}
        {%- else -%}
            {%- do ranges.append([day, day + modules.datetime.timedelta(days=1)]) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- set parts = ['event_time is null'] -%}
    {%- for first, after in ranges -%}
        {%- do parts.append(
            'event_time >= ' ~ timestamp_literal(first.strftime('%Y-%m-%d') ~ ' 00:00:00+00')
            ~ ' and event_time < ' ~ timestamp_literal(after.strftime('%Y-%m-%d') ~ ' 00:00:00+00')
        ) -%}
    {%- endfor -%}
    {{ return('(' ~ parts | join(' or ') ~ ') /* ' ~ why ~ ' */') }}
{% endmacro %}


{% macro touched_spans_predicate(span_types=none) %}
    {#-
        For a model rebuilding the traces touched by new spans (optionally of some span types):
        `trace_id in (those traces)` and the days of their spans (`span_days_predicate`).
    -#}
    {{ return(
        'trace_id in (' ~ traces_touched_by_spans(ref('base_lake__spans'), span_types=span_types) ~ ')'
        ~ ' and ' ~ span_days_predicate()
    ) }}
{% endmacro %}


{% macro duckdb__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) %}
    {#-
        dbt-duckdb's delete+insert (a root-project macro takes precedence over the adapter's),
        plus, for a model with meta `delete_by_span_days` (base_lake__spans): the delete of the
        stored copies of the written span ids carries their days (`base_span_days_predicate`
        over the rows written), so it skips other days' row groups instead of reading every
        span id. Every other model gets the adapter's SQL unchanged.
    -#}
    {%- set predicates = [] + (incremental_predicates or []) -%}
    {%- if config.get('meta', {}).get('delete_by_span_days') -%}
        {%- do predicates.append(base_span_days_predicate('select * from ' ~ source)) -%}
    {%- endif -%}
    {{ return(dbt.duckdb__get_delete_insert_merge_sql(
        target, source, unique_key, dest_columns, predicates if predicates else incremental_predicates
    )) }}
{% endmacro %}
