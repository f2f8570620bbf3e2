{#-
    Data tests that cost what is new: on an incremental run, a data test of a model that
    declares a slice (`meta.test_slice`) checks only the rows the base tables could have changed
    since that test last passed, not the whole table.

    - Each test keeps its own watermark in the watermark table (`model_name` = the test's unique
      id; loaded.sql): per base table, the newest `_loaded_at` it has checked. At compile time the
      newest stamps now are recorded as pending; the on-run-end hook `record_test_watermarks()`
      makes them the test's watermark only if the test passed. A failing, erroring or warning
      test checks the same rows (and any newer) again next run.
    - The slice is the traces T with a row stamped in (watermark, newest] in any base table, and,
      for daily marts, the days D of those traces (their `trace_date`, and the days of their
      spans: the day a trace left when its root landed late). `meta.test_slice` names how the
      tested model's rows map to them: `span_id` (the span base table and the staging span
      views, whose rows are each a function of one span: the span ids written in the window,
      and their event_time range), `trace_id` (`trace_id in T`), `span_trace_id` (fct_spans:
      `trace_id in T` and event_time within the days of T's spans; T from new spans only,
      since feedback and annotations change no span row), `trace_of_spans` (`trace_id in T`,
      T from new spans only: a singular test of span-derived request columns), `trace_date`
      (`trace_date in D`) or `period_start` (`utc_date(period_start) in D`).
    - T is read from the base tables' rows stamped in (watermark, newest] (the end of each table:
      cheap through zone maps). D is read from `int_traces_stamped` (one small row per trace:
      trace_date, span_dates, newest stamps), not from a scan of base_lake__spans, when the test
      is downstream of it in the graph (so a build updates it first: fct_requests refs it) and
      its newest stamps equal the base tables'; else from int_traces_enveloped and
      base_lake__spans as before. D is inlined as date literals (row groups of other days skipped).
    - Slices are on only when the environment has TRACEHOUSE_TEST_SLICES=1: `tracehouse run`
      sets it on an incremental run whose dbt project is unchanged since the last good run. A full
      refresh, a changed project (a model, macro, seed or test), a test that never passed, and
      `dbt build` by hand test whole tables. DuckDB only for now (other engines test whole tables).

    Why a slice is enough, for uniqueness too: every incremental model writes by delete+insert on
    its key, and rebuilds whole keys (a trace, a day) from all their rows. So every row written
    since the test last passed belongs to T (or D), every stored row that shares a key with a
    written row was deleted, and every other row was there, unchanged, when the test last passed.
    A duplicate key, a NULL or an unexpected value can only be in the slice. Models rebuilt from
    inputs of many keys (dim_versions, fct_eval_candidates, the eval comparison marts) and tables
    not fed by the lake declare no slice and are always tested whole.
-#}

{% macro test_slices_enabled() %}
    {#-
        An environment variable, not a dbt var: a var that differs between invocations (this
        build, `dbt source freshness`, the next build) makes dbt re-parse the whole project.
        Read only while executing, so parsing never depends on it.
    -#}
    {{ return(execute and env_var('TRACEHOUSE_TEST_SLICES', '') in ('1', 'true') and not flags.FULL_REFRESH) }}
{% endmacro %}


{% macro _base_relation(upstream) %}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.base_lake__' ~ upstream) -%}
    {%- if node is none -%}{{ return(none) }}{%- endif -%}
    {{ return(adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias)) }}
{% endmacro %}


{% macro _model_relation(name) %}
    {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ name) -%}
    {%- if node is none -%}{{ return(none) }}{%- endif -%}
    {{ return(adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias)) }}
{% endmacro %}


{% macro test_slice_traces(test_id, sources=none, columns='trace_id', windows=none) %}
    {#-
        SQL selecting the trace ids T of test `test_id`'s slice, or none when the test must read
        the whole table (no watermark yet, a base table missing). Records the pending upper bounds.
        `sources`: the base tables whose new rows can change the tested rows (default all
        three; span-level relations pass ['spans']: late feedback or annotations change no span
        row). `columns`: what to select of each new row instead of `trace_id` (the span slice
        selects `span_id, event_time`). `windows`, a dict if given, receives each source's
        (watermark, newest stamp): the bounds the slice was read in (`_stamped_since`).
    -#}
    {%- set bases = [] -%}
    {%- for upstream in (sources or ['spans', 'feedback', 'annotations']) -%}
        {%- set relation = _base_relation(upstream) -%}
        {%- if relation is none -%}{{ return(none) }}{%- endif -%}
        {%- do bases.append((upstream, relation)) -%}
    {%- endfor -%}
    {#- the bounds per base table; the newest stamps become the test's pending rows (loaded.sql) -#}
    {%- set bounds = watermark_bounds(test_id, bases, replace_all=true) -%}
    {%- set windows = {} if windows is none else windows -%}
    {%- set state = {'whole': false} -%}
    {%- for upstream, relation in bases -%}
        {%- set done, newest = bounds[upstream] -%}
        {%- if done is none and newest is not none -%}
            {%- do state.update({'whole': true}) -%}
        {%- endif -%}
        {%- do windows.update({upstream: (done, newest)}) -%}
    {%- endfor -%}
    {%- if state.whole or not test_slices_enabled() -%}{{ return(none) }}{%- endif -%}
    {%- set parts = [] -%}
    {%- for upstream, relation in bases -%}
        {%- set done, newest = windows[upstream] -%}
        {%- if newest is not none and (done is none or newest > done) -%}
            {%- do parts.append(
                "select " ~ columns ~ " from " ~ relation ~ " where _loaded_at > " ~ stamp_literal(done)
                ~ " and _loaded_at <= " ~ stamp_literal(newest)
            ) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if not parts -%}
        {{ return("select " ~ columns ~ " from " ~ bases[0][1] ~ " where false") }}
    {%- endif -%}
    {{ return(parts | join('\n union \n')) }}
{% endmacro %}


{% macro _depends_on(node_id, ancestor_id) %}
    {#- Whether graph node `node_id` reads `ancestor_id`, directly or through other nodes. -#}
    {%- set seen = {} -%}
    {%- set queue = [node_id] -%}
    {%- for current in queue -%}
        {%- set node = graph.nodes.get(current) -%}
        {%- if node is not none -%}
            {%- for parent in node.depends_on.nodes if parent not in seen -%}
                {%- if parent == ancestor_id -%}{{ return(true) }}{%- endif -%}
                {%- do seen.update({parent: true}) -%}
                {%- do queue.append(parent) -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(false) }}
{% endmacro %}


{% macro _stamps_relation(test_id) %}
    {#-
        int_traces_stamped, when test `test_id` may read it: the test runs after it in any build
        (the tested model, or the singular test itself, is downstream of it), and it has taken in
        every stamp of the base tables (it is not older than a base table built since). Else none.
    -#}
    {%- set stamps_id = 'model.' ~ project_name ~ '.int_traces_stamped' -%}
    {%- set test_node = graph.nodes.get(test_id) -%}
    {%- if test_node is none -%}{{ return(none) }}{%- endif -%}
    {%- set attached = test_node.get('attached_node') -%}
    {%- if not _depends_on(attached if attached else test_id, stamps_id) -%}{{ return(none) }}{%- endif -%}
    {%- set stamps = _model_relation('int_traces_stamped') -%}
    {%- if stamps is none -%}{{ return(none) }}{%- endif -%}
    {%- set checks = [] -%}
    {%- for upstream in ['spans', 'feedback', 'annotations'] -%}
        {%- set relation = _base_relation(upstream) -%}
        {%- if relation is none -%}{{ return(none) }}{%- endif -%}
        {%- do checks.append(
            "(select max(_loaded_at) from " ~ relation ~ ") is not distinct from "
            ~ "(select max(" ~ upstream ~ "_loaded_at) from " ~ stamps ~ ")"
        ) -%}
    {%- endfor -%}
    {%- set current = run_query("select " ~ checks | join(' and ')).columns[0].values()[0] -%}
    {{ return(stamps if current else none) }}
{% endmacro %}


{% macro _stamped_since(windows) %}
    {#-
        A predicate over int_traces_stamped's columns selecting the traces T of a test's slice
        without a join, from the `windows` test_slice_traces read T in: a trace has a row
        stamped after the test's watermark on a source exactly when its newest stamp there is
        after it (the table's newest stamps equal the base tables', `_stamps_relation`). A scan
        of ~1 row per trace, no semi-join per test.
    -#}
    {%- set parts = [] -%}
    {%- for upstream, bounds in windows.items() -%}
        {%- set done, newest = bounds -%}
        {%- if done is none -%}
            {%- do parts.append(upstream ~ '_loaded_at is not null') -%}
        {%- else -%}
            {%- do parts.append(upstream ~ '_loaded_at > ' ~ stamp_literal(done)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('(' ~ (parts | join(' or ') if parts else 'false') ~ ')') }}
{% endmacro %}


{% macro test_slice_days(test_id, traces, windows) %}
    {#-
        (relation read, SQL selecting the days D of the traces `traces` (SQL selecting trace
        ids): their trace_date and the days of their spans). From int_traces_stamped (small) when the test may
        read it (`_stamps_relation`; the traces picked by their stamps, `_stamped_since`); else
        from int_traces_enveloped and base_lake__spans (a scan of every span), or none when those
        are missing.
    -#}
    {%- set stamps = _stamps_relation(test_id) -%}
    {%- if stamps is not none -%}
        {%- set since = _stamped_since(windows) -%}
        {%- set days -%}
            select trace_date from {{ stamps }} where {{ since }}
            union
            select unnest(span_dates) from {{ stamps }} where {{ since }}
        {%- endset -%}
        {{ return([stamps | string, days]) }}
    {%- endif -%}
    {%- set requests = _model_relation('int_traces_enveloped') -%}
    {%- set spans = _base_relation('spans') -%}
    {%- if requests is none or spans is none -%}{{ return(none) }}{%- endif -%}
    {%- set days -%}
        select trace_date from {{ requests }} where trace_id in ({{ traces }})
        union
        select {{ utc_date('event_time') }} from {{ spans }} where trace_id in ({{ traces }})
    {%- endset -%}
    {{ return([requests ~ ' and ' ~ spans, days]) }}
{% endmacro %}


{% macro _span_trace_predicate(test_id, traces, windows) %}
    {#-
        `span_trace_id` (fct_spans, a view over every span): `trace_id in T`, and the span's
        event_time on the days of T's spans (from int_traces_stamped, when the test may read
        it): every span of T is there, and the scans of base_lake__spans under the view skip the
        row groups of other days (the table is stored in load order, i.e. by day).
    -#}
    {%- set predicate = 'trace_id in (' ~ traces ~ ')' -%}
    {%- set stamps = _stamps_relation(test_id) -%}
    {%- if stamps is none -%}{{ return(predicate) }}{%- endif -%}
    {#- Exact OR-ed day ranges, not a min..max envelope: a late span of an old trace would
        make the envelope every day in between (span_days.sql). -#}
    {{ return(predicate ~ ' and ' ~ _span_days_ranges(
        'select unnest(span_dates) as day from ' ~ stamps ~ ' where ' ~ _stamped_since(windows),
        'the days of the slice, from ' ~ stamps
    )) }}
{% endmacro %}


{% macro _span_id_predicate(test_id) %}
    {#-
        `span_id` (the span base table and the staging span views: one row per span, a function
        of that span's row alone): the spans the span base table wrote since the test last
        passed (every other row is as it was then: the base table replaces a span by
        delete+insert on span_id), and their event_time range, so the scan under a view skips
        the row groups of other days (the table is stored in load order, i.e. by day).
    -#}
    {%- set rows = test_slice_traces(test_id, ['spans'], 'span_id, event_time') -%}
    {%- if rows is none -%}{{ return(none) }}{%- endif -%}
    {%- set bounds = run_query(
        'select count(*), min(event_time), max(event_time), count(*) - count(event_time) from ('
        ~ rows ~ ') as written'
    ) -%}
    {%- set n, first, last, undated = bounds.rows[0] -%}
    {%- if n == 0 -%}{{ return('false /* no span written since this test last passed */') }}{%- endif -%}
    {%- set predicate = 'span_id in (select span_id from (' ~ rows ~ ') as written)' -%}
    {%- if first is none -%}{{ return(predicate ~ ' and event_time is null') }}{%- endif -%}
    {%- set within = 'event_time >= ' ~ stamp_literal(first) ~ ' and event_time <= ' ~ stamp_literal(last) -%}
    {{ return(predicate ~ ' and (' ~ (('event_time is null or ' if undated > 0 else '') ~ within) ~ ')') }}
{% endmacro %}


{% macro test_slice_predicate(test_id, slice) %}
    {#- A predicate over the tested relation's columns for `slice` (see above), or none: whole table. -#}
    {%- if slice not in ('span_id', 'trace_id', 'span_trace_id', 'trace_of_spans', 'trace_date', 'period_start') or target.type != 'duckdb' -%}
        {{ return(none) }}
    {%- endif -%}
    {%- if slice == 'span_id' -%}
        {{ return(_span_id_predicate(test_id)) }}
    {%- endif -%}
    {#- A span-level relation (fct_spans), or a span-derived column, changes only with new spans. -#}
    {%- set windows = {} -%}
    {%- set traces = test_slice_traces(test_id, ['spans'] if slice in ('span_trace_id', 'trace_of_spans') else none, windows=windows) -%}
    {%- if traces is none -%}{{ return(none) }}{%- endif -%}
    {%- if slice in ('trace_id', 'trace_of_spans') -%}
        {{ return('trace_id in (' ~ traces ~ ')') }}
    {%- endif -%}
    {%- if slice == 'span_trace_id' -%}
        {{ return(_span_trace_predicate(test_id, traces, windows)) }}
    {%- endif -%}
    {%- set days_sql = test_slice_days(test_id, traces, windows) -%}
    {%- if days_sql is none -%}{{ return(none) }}{%- endif -%}
    {#- The days, as date literals: a mart stored by day skips the other days' row groups. -#}
    {%- set literals = [] -%}
    {%- for day in run_query('select distinct * from (' ~ days_sql[1] ~ ') as days where trace_date is not null').columns[0].values() -%}
        {%- do literals.append("date '" ~ day.strftime('%Y-%m-%d') ~ "'") -%}
    {%- endfor -%}
    {%- set days = literals | join(', ') if literals else 'select cast(null as date) where false' -%}
    {%- set days = days ~ ' /* the days of the slice, from ' ~ days_sql[0] ~ ' */' -%}
    {%- if slice == 'trace_date' -%}
        {{ return('trace_date in (' ~ days ~ ')') }}
    {%- endif -%}
    {{ return(utc_date('period_start') ~ ' in (' ~ days ~ ')') }}
{% endmacro %}


{% macro tested_model_slice() %}
    {#- The `meta.test_slice` of the model a generic test is attached to (none if it has none). -#}
    {%- set attached = model.get('attached_node') if model is mapping else none -%}
    {%- if not attached -%}{{ return(none) }}{%- endif -%}
    {%- set node = graph.nodes.get(attached) -%}
    {%- if node is none -%}{{ return(none) }}{%- endif -%}
    {{ return(node.config.get('meta', {}).get('test_slice')) }}
{% endmacro %}


{% macro get_where_subquery(relation) -%}
    {#-
        dbt's hook for a generic test's relation (its `where` config), extended with the test
        slice above. Outside execution, or for a model without a slice, it is dbt's own.
    -#}
    {%- set where = config.get('where', '') -%}
    {%- set slice = none -%}
    {%- if execute and model is mapping and model.get('resource_type') == 'test' -%}
        {%- set slice = test_slice_predicate(model.unique_id, tested_model_slice()) -%}
    {%- endif -%}
    {%- set predicates = [] -%}
    {%- if where -%}{%- do predicates.append('(' ~ where ~ ')') -%}{%- endif -%}
    {%- if slice -%}{%- do predicates.append('(' ~ slice ~ ')') -%}{%- endif -%}
    {%- if predicates -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ predicates | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}


{% macro singular_test_slice(slice) %}
    {#- In a singular test: the slice predicate for `slice`, or `true` (whole tables). -#}
    {%- if not execute -%}{{ return('true') }}{%- endif -%}
    {%- set predicate = test_slice_predicate(model.unique_id, slice) -%}
    {{ return(predicate if predicate else 'true') }}
{% endmacro %}


{% macro record_test_watermarks(results) %}
    {#- on-run-end: the tests that passed this run have checked up to their pending bounds. -#}
    {%- if not execute or target.type != 'duckdb' -%}{{ return('') }}{%- endif -%}
    {%- set passed = [] -%}
    {%- for result in results
        if result.node.resource_type == 'test' and (result.status | string) == 'pass' -%}
        {%- do passed.append("'" ~ result.node.unique_id ~ "'") -%}
    {%- endfor -%}
    {%- if not passed -%}{{ return('') }}{%- endif -%}
    {%- set ids = passed | join(', ') -%}
    create table if not exists {{ watermark_table() }} (model_name varchar, upstream varchar, loaded_at timestamptz);
    create table if not exists {{ watermark_table('pending') }} (model_name varchar, upstream varchar, loaded_at timestamptz);
    delete from {{ watermark_table() }}
    where model_name in (select model_name from {{ watermark_table('pending') }} where model_name in ({{ ids }}));
    insert into {{ watermark_table() }}
    select model_name, upstream, loaded_at from {{ watermark_table('pending') }} where model_name in ({{ ids }});
    delete from {{ watermark_table('pending') }} where model_name in ({{ ids }})
{% endmacro %}
