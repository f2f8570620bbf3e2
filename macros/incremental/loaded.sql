{#-
    Incremental by what was loaded, not by a lookback window.

    1. The base tables (`base_lake__spans`, `base_lake__feedback`, `base_lake__annotations`) read
       only the lake files they have not loaded yet (a snapshot of the lake's files, by path, size
       and modification time, is kept next to each base table; `tracehouse lake compact`'s merged
       file is such a new file). The rows of those files are ranked together with the stored row
       of the same id (the latest copy already loaded), so the winner is the latest copy among
       every file ever loaded, whatever the ingest_time order. Only ids whose winner changed
       are written, stamped with `_loaded_at` (this build, strictly after any stamp already
       stored). No lookback: a file that lands late with old ingest times is still new.
    2. Every other incremental model rebuilds the keys (traces; days; periods) touched by base
       rows stamped after its own watermark, and no others. A model's watermark is the newest
       `_loaded_at` of each base table it has consumed; the window is (watermark, newest stamp at
       compile time], the upper bound is recorded as pending at compile time and becomes the
       watermark in the post-hook `record_watermarks()`, i.e. only once the model succeeded. A
       model that failed, or was never built with watermarks, simply looks further back.
    With nothing new, no base row is written and every window is empty: the run rewrites nothing.
-#}

{% macro watermark_table(kind='done') %}
    {#- The watermark table (`done`) or the compile-time upper bounds (`pending`). -#}
    {{ return(adapter.dispatch('watermark_table', 'tracehouse')(kind)) }}
{% endmacro %}

{% macro default__watermark_table(kind='done') %}
    {{ return(target.schema ~ '.tracehouse_watermarks' ~ ('_pending' if kind == 'pending' else '')) }}
{% endmacro %}


{% macro stamp_literal(value) %}
    {#- A timestamp literal from a Python datetime (UTC). -#}
    {{ return(timestamp_literal(value.strftime('%Y-%m-%d %H:%M:%S.%f') ~ '+00')) }}
{% endmacro %}


{% macro load_stamp() %}
    {#-
        The `_loaded_at` of the rows a base table writes in this build: the run's start, and
        strictly after every stamp already stored (so a clock set back cannot hide rows).
    -#}
    {%- set stamp = run_started_at -%}
    {%- if execute and is_incremental() -%}
        {%- set names = adapter.get_columns_in_relation(this) | map(attribute='name') | list -%}
        {%- if '_loaded_at' in names -%}
            {%- set stored = run_query('select max(_loaded_at) from ' ~ this).columns[0].values()[0] -%}
            {%- if stored is not none -%}
                {#- An engine without time zones in its timestamps (Spark) returns UTC, naive. -#}
                {%- if stored.tzinfo is none -%}
                    {%- set stored = stored.replace(tzinfo=run_started_at.tzinfo) -%}
                {%- endif -%}
                {%- set floor = stored + modules.datetime.timedelta(microseconds=1) -%}
                {%- if floor > stamp -%}{%- set stamp = floor -%}{%- endif -%}
            {%- endif -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(stamp_literal(stamp)) }}
{% endmacro %}


{% macro lake_files_to_load(dataset) %}
    {#-
        The lake files of `dataset` this base table has not loaded yet (a list of paths), or
        none when the engine cannot list files (then the whole dataset is read: still exact,
        because rows are ranked against the stored ones, only slower). Also snapshots the files
        seen, which the post-hook `record_lake_files()` records as loaded once the model succeeded.
    -#}
    {{ return(adapter.dispatch('lake_files_to_load', 'tracehouse')(dataset)) }}
{% endmacro %}

{% macro duckdb__lake_files_to_load(dataset) %}
    {%- if not execute -%}{{ return([]) }}{%- endif -%}
    {%- set seen = this.schema ~ '.' ~ this.identifier ~ '__lake_files_seen' -%}
    {%- set loaded = this.schema ~ '.' ~ this.identifier ~ '__lake_files_loaded' -%}
    {%- set glob = lake_path() ~ '/' ~ dataset ~ '/dt=*/*.parquet' -%}
    {%- set n_files = run_query("select count(*) from glob('" ~ glob ~ "')").columns[0].values()[0] -%}
    {%- do run_query("create schema if not exists " ~ this.schema) -%}
    {%- if n_files > 0 -%}
        {%- do run_query(
            "create or replace table " ~ seen ~ " as select filename, size, last_modified from read_blob('"
            ~ glob ~ "')"
        ) -%}
    {%- else -%}
        {%- do run_query(
            "create or replace table " ~ seen ~ " (filename varchar, size bigint, last_modified timestamptz)"
        ) -%}
    {%- endif -%}
    {%- do run_query(
        "create table if not exists " ~ loaded ~ " (filename varchar, size bigint, last_modified timestamptz)"
    ) -%}
    {%- set new_files = run_query(
        "select filename from " ~ seen ~ " anti join " ~ loaded
        ~ " using (filename, size, last_modified) order by filename"
    ) -%}
    {{ return(new_files.columns[0].values() | list) }}
{% endmacro %}

{% macro default__lake_files_to_load(dataset) %}
    {{ return(none) }}
{% endmacro %}


{% macro record_lake_files() %}
    {#- Post-hook of a base table: the files seen at compile time are now loaded. -#}
    {{ return(adapter.dispatch('record_lake_files', 'tracehouse')()) }}
{% endmacro %}

{% macro duckdb__record_lake_files() %}
    create or replace table {{ this.schema }}.{{ this.identifier }}__lake_files_loaded as
    select * from {{ this.schema }}.{{ this.identifier }}__lake_files_seen
{% endmacro %}

{% macro default__record_lake_files() %}
    select 1
{% endmacro %}


{% macro lake_rows_from_files(dataset, files) %}
    {#- The contract columns of `dataset` read from exactly these lake files (none: no row). -#}
    {{ return(adapter.dispatch('lake_rows_from_files', 'tracehouse')(dataset, files)) }}
{% endmacro %}

{% macro duckdb__lake_rows_from_files(dataset, files) %}
    {%- set columns = contract_columns(dataset) -%}
    {%- set typed_empty -%}
        select
        {%- for column, logical in columns %}
            cast(null as {{ sql_type(logical) }}) as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
        where false
    {%- endset -%}
    select
    {%- for column, logical in columns %}
        cast({{ column }} as {{ sql_type(logical) }}) as {{ column }}{{ "," if not loop.last }}
    {%- endfor %}
    from (
        {{ typed_empty }}
        {%- if files %}
        union all by name
        select * from read_parquet(
            ['{{ files | join("', '") }}'], hive_partitioning = false, union_by_name = true
        )
        {%- endif %}
    ) as landed_files
{% endmacro %}


{% macro default__lake_rows_from_files(dataset, files) %}{{ not_ported('lake_rows_from_files') }}{% endmacro %}


{% macro lake_base(dataset, id_column, tie_breakers) %}
    {#-
        The body of a base table: every row of `dataset` once (the contract's dedup rule: the
        latest ingest_time per id, ties broken by `tie_breakers`, the row's own content), plus
        `_loaded_at`. A full build deduplicates the whole lake; an incremental build reads only
        the files not loaded yet, ranks their rows with the stored row of the same id, and
        writes the ids whose winner is a new row (a re-read identical row keeps the stored one).
        Configure the model with unique_key = id_column, delete+insert, and the post-hook
        `record_lake_files()`.
    -#}
    {%- set columns = contract_columns(dataset) | map('first') | list -%}
    {%- set files = lake_files_to_load(dataset) -%}
with

{% if is_incremental() %}
landed as (
    {%- if files is none %}
    select * from {{ source('lake', dataset) }}
    {%- else %}
    {{ lake_rows_from_files(dataset, files) }}
    {%- endif %}
),

stored as (
    select {{ columns | join(', ') }}
    from {{ this }}
    where {{ id_column }} in (select {{ id_column }} from landed)
    {%- if dataset == 'spans' and files is not none %}
        and {{ base_span_days_predicate(lake_rows_from_files(dataset, files)) }}
    {%- endif %}
),

candidates as (
    select {{ columns | join(', ') }}, false as _is_stored
    from landed
    union all
    select {{ columns | join(', ') }}, true as _is_stored
    from stored
),

ranked as (
    select
        *,
        row_number() over (
            partition by {{ id_column }}
            order by ingest_time desc nulls last, {{ tie_breakers }}, _is_stored desc
        ) as _row_rank
    from candidates
),

deduplicated as (
    select * from ranked
    where _row_rank = 1 and not _is_stored
),
{% else %}
deduplicated as (
    {#-
        The lake's relation itself, not a `landed` CTE: latest_per_id reads its input three
        times, and DuckDB materializes a CTE read more than once, which here is every row of the
        lake, wide: at 30M spans 26-35 GB of temp files and 194 s, against 0 and 85 s reading the
        Parquet again.
    -#}
    {{ latest_per_id(source('lake', dataset), id_column, tie_breakers) }}
),
{% endif %}

final as (
    select
        {%- for column in columns %}
        {{ column }},
        {%- endfor %}
        {{ load_stamp() }} as _loaded_at
    from deduplicated
)

select * from final
{% endmacro %}


{% macro watermark_table_statements() %}
    {#- The statements (a list) that create the watermark tables if missing. -#}
    {%- set columns = [('model_name', 'str'), ('upstream', 'str'), ('loaded_at', 'timestamp')] -%}
    {{ return([
        create_table_statement(watermark_table(), columns),
        create_table_statement(watermark_table('pending'), columns),
    ]) }}
{% endmacro %}


{% macro create_watermark_tables() %}
    {#- on-run-start: the watermark tables exist before any model compiles. -#}
    {{ return(adapter.dispatch('create_watermark_tables', 'tracehouse')()) }}
{% endmacro %}

{% macro default__create_watermark_tables() %}
    {{ return(run_statements(watermark_table_statements())) }}
{% endmacro %}


{% macro ensure_watermark_tables() %}
    {#- In a model, before reading its watermarks: nothing where on-run-start created them. -#}
    {{ return(adapter.dispatch('ensure_watermark_tables', 'tracehouse')()) }}
{% endmacro %}

{% macro default__ensure_watermark_tables() %}{{ return('') }}{% endmacro %}


{% macro loaded_window(base_relation, upstream) %}
    {#-
        A predicate on `_loaded_at`: the rows of `base_relation` stamped after this model's
        watermark on `upstream` (spans / feedback / annotations) and up to the newest stamp now.
        Records that newest stamp as pending; `record_watermarks()` makes it the watermark.
    -#}
    {%- if not execute -%}{{ return('true') }}{%- endif -%}
    {{ return(loaded_windows([(upstream, base_relation)])[upstream]) }}
{% endmacro %}


{% macro loaded_windows(bases) %}
    {#-
        `loaded_window()` of several (upstream, base relation) pairs at once: a dict upstream ->
        predicate, with one round trip for all of them (watermark_bounds()).
    -#}
    {%- if not execute -%}
        {%- set all = {} -%}
        {%- for upstream, relation in bases -%}{%- do all.update({upstream: 'true'}) -%}{%- endfor -%}
        {{ return(all) }}
    {%- endif -%}
    {%- do ensure_watermark_tables() -%}
    {%- set bounds = watermark_bounds(this.identifier, bases) -%}
    {%- set windows = {} -%}
    {%- for upstream, relation in bases -%}
        {%- set done, newest = bounds[upstream] -%}
        {%- if newest is none -%}
            {%- do windows.update({upstream: 'false'}) -%}
        {%- elif done is none -%}
            {%- do windows.update({upstream: '_loaded_at <= ' ~ stamp_literal(newest)}) -%}
        {%- else -%}
            {%- do windows.update({upstream:
                '_loaded_at > ' ~ stamp_literal(done) ~ ' and _loaded_at <= ' ~ stamp_literal(newest)}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(windows) }}
{% endmacro %}


{% macro watermark_bounds_sql(model_name, bases) %}
    {#- (model_name, upstream, done, newest) per (upstream, relation) of `bases`. -#}
    {%- set parts = [] -%}
    {%- for upstream, relation in bases -%}
        {%- do parts.append(
            "select '" ~ model_name ~ "' as model_name, '" ~ upstream ~ "' as upstream, "
            ~ "(select max(loaded_at) from " ~ watermark_table() ~ " where model_name = '" ~ model_name
            ~ "' and upstream = '" ~ upstream ~ "') as done, "
            ~ "(select max(_loaded_at) from " ~ relation ~ ") as newest"
        ) -%}
    {%- endfor -%}
    {{ return(parts | join(' union all ')) }}
{% endmacro %}


{% macro watermark_bounds(model_name, bases, replace_all=false) %}
    {#-
        For `model_name` (a model's identifier, or a data test's unique id) and `bases`, a list of
        (upstream, relation with `_loaded_at`): a dict upstream -> (watermark, newest stamp now),
        either none. Records each newest stamp (not none) as the pending upper bound of
        (model_name, upstream), replacing the pending rows of those upstreams, or of every
        upstream with `replace_all`. `record_watermarks()` (models) and
        `record_test_watermarks()` (tests) make them watermarks once the node succeeded.
    -#}
    {{ return(adapter.dispatch('watermark_bounds', 'tracehouse')(model_name, bases, replace_all)) }}
{% endmacro %}

{% macro default__watermark_bounds(model_name, bases, replace_all=false) %}
    {#- Two round trips: read the bounds, then write the pending rows. -#}
    {%- set bounds = {} -%}
    {%- set pending = [] -%}
    {%- for row in run_query(watermark_bounds_sql(model_name, bases)) -%}
        {%- do bounds.update({row[1]: (row[2], row[3])}) -%}
        {%- if row[3] is not none -%}
            {%- do pending.append((row[1], row[3])) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if replace_all -%}
        {%- set values = [] -%}
        {%- for upstream, stamp in pending -%}
            {%- do values.append("('" ~ model_name ~ "', '" ~ upstream ~ "', " ~ stamp_literal(stamp) ~ ")") -%}
        {%- endfor -%}
        {%- do run_query(
            "delete from " ~ watermark_table('pending') ~ " where model_name = '" ~ model_name ~ "'"
            ~ (("; insert into " ~ watermark_table('pending') ~ " values " ~ values | join(', ')) if values else '')
        ) -%}
    {%- else -%}
        {%- for upstream, stamp in pending -%}
            {%- do set_pending_watermark(upstream, stamp) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(bounds) }}
{% endmacro %}

{% macro duckdb__watermark_bounds(model_name, bases, replace_all=false) %}
    {#-
        One round trip: the bounds go to a temporary table (this connection's own), the pending
        rows are replaced from it, and it is returned. Each base table's max(_loaded_at) is read
        once.
    -#}
    {%- set scratch = '_tracehouse_watermark_bounds' -%}
    {%- set upstreams = bases | map('first') | list -%}
    {%- set sql -%}
        create or replace temporary table {{ scratch }} as {{ watermark_bounds_sql(model_name, bases) }};
        delete from {{ watermark_table('pending') }} where model_name = '{{ model_name }}'
        {%- if not replace_all %} and upstream in ('{{ upstreams | join("', '") }}'){% endif %};
        insert into {{ watermark_table('pending') }}
        select model_name, upstream, newest from {{ scratch }} where newest is not null;
        select model_name, upstream, done, newest from {{ scratch }}
    {%- endset -%}
    {%- set bounds = {} -%}
    {%- for row in run_query(sql) -%}
        {%- do bounds.update({row[1]: (row[2], row[3])}) -%}
    {%- endfor -%}
    {{ return(bounds) }}
{% endmacro %}


{% macro set_pending_watermark(upstream, stamp) %}
    {#- Record `stamp` as this model's pending upper bound on `upstream` (replacing any). -#}
    {{ return(adapter.dispatch('set_pending_watermark', 'tracehouse')(upstream, stamp)) }}
{% endmacro %}

{% macro default__set_pending_watermark(upstream, stamp) %}
    {%- set key = "model_name = '" ~ this.identifier ~ "' and upstream = '" ~ upstream ~ "'" -%}
    {%- do run_query(run_statements(
        delete_statements(watermark_table('pending'), key)
        + ["insert into " ~ watermark_table('pending') ~ " values ('" ~ this.identifier ~ "', '"
           ~ upstream ~ "', " ~ stamp_literal(stamp) ~ ")"]
    )) -%}
    {{ return('') }}
{% endmacro %}


{% macro base_tables_built() %}
    {#- (upstream, relation) of each base table that exists: spans, feedback, annotations. -#}
    {%- set bases = [] -%}
    {%- for upstream in ['spans', 'feedback', 'annotations'] -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.base_lake__' ~ upstream) -%}
        {%- if node is not none and adapter.get_relation(
            database=node.database, schema=node.schema, identifier=node.alias) is not none -%}
            {%- do bases.append((upstream, node.schema ~ '.' ~ node.alias)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(bases) }}
{% endmacro %}


{% macro watermarked_upstreams() %}
    {#-
        (upstream, relation) of everything this model's full build takes as read: the base
        tables that exist, and the stamped models (`_loaded_at`) it declares it windows on in
        config meta.watermark_upstreams = {upstream: model name} (fct_eval_candidates).
    -#}
    {%- set upstreams = base_tables_built() -%}
    {%- set declared = model.config.get('meta', {}).get('watermark_upstreams', {}) or {} -%}
    {%- for upstream, name in declared.items() -%}
        {%- set node = graph.nodes.get('model.' ~ project_name ~ '.' ~ name) -%}
        {%- if node is not none and adapter.get_relation(
            database=node.database, schema=node.schema, identifier=node.alias) is not none -%}
            {%- do upstreams.append((upstream, node.schema ~ '.' ~ node.alias)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(upstreams) }}
{% endmacro %}


{% macro record_watermarks() %}
    {#-
        Post-hook of every incremental model downstream of the base tables (dbt_project.yml):
        the pending upper bounds of this build become the model's watermarks. A full build
        recorded none (it read everything): its watermark is the newest stamp of every base table
        (and of the stamped models it declares, `watermarked_upstreams()`).
    -#}
    {%- if model.config.materialized != 'incremental' or this.identifier.startswith('base_lake__') -%}
        {{ return('') }}
    {%- endif -%}
    {{ return(adapter.dispatch('record_watermarks', 'tracehouse')()) }}
{% endmacro %}

{% macro default__record_watermarks() %}
    {%- set bases = watermarked_upstreams() -%}
    {%- set model_key = "model_name = '" ~ this.identifier ~ "'" -%}
    {%- set statements = watermark_table_statements() -%}
    {%- if bases -%}
        {%- set newest = [] -%}
        {%- for upstream, relation in bases -%}
            {%- do newest.append(
                "select '" ~ this.identifier ~ "' as model_name, '" ~ upstream
                ~ "' as upstream, max(_loaded_at) as loaded_at from " ~ relation
            ) -%}
        {%- endfor -%}
        {%- do statements.append(
            "insert into " ~ watermark_table('pending') ~ " select * from ("
            ~ newest | join(" union all ") ~ ") as newest where loaded_at is not null"
            ~ " and not exists (select 1 from " ~ watermark_table('pending') ~ " where " ~ model_key ~ ")"
        ) -%}
    {%- endif -%}
    {%- do statements.extend(delete_statements(
        watermark_table(),
        model_key ~ " and upstream in (select upstream from " ~ watermark_table('pending')
        ~ " where " ~ model_key ~ ")"
    )) -%}
    {%- do statements.append(
        "insert into " ~ watermark_table() ~ " select model_name, upstream, loaded_at from "
        ~ watermark_table('pending') ~ " where " ~ model_key
    ) -%}
    {%- do statements.extend(delete_statements(watermark_table('pending'), model_key)) -%}
    {{ return(run_statements(statements)) }}
{% endmacro %}


{% macro loaded_span_ids(span_types=none) %}
    {#- The span ids stamped in this model's window (optionally of some span types only). -#}
    select span_id
    from {{ ref('base_lake__spans') }}
    where {{ loaded_window(ref('base_lake__spans'), 'spans') }}
    {%- if span_types %}
        and span_type in ('{{ span_types | join("', '") }}')
    {%- endif %}
{% endmacro %}


{% macro traces_loaded(sources=['spans', 'feedback', 'annotations'], span_types=none) %}
    {#-
        The trace ids with a row stamped in this model's window, in the base tables of
        `sources` (span rows optionally of some span types only).
    -#}
    {%- set bases = [] -%}
    {%- for source_name in sources -%}
        {%- do bases.append((source_name, ref('base_lake__' ~ source_name))) -%}
    {%- endfor -%}
    {%- set windows = loaded_windows(bases) -%}
    {%- for source_name in sources %}
    select trace_id
    from {{ ref('base_lake__' ~ source_name) }}
    where {{ windows[source_name] }}
    {%- if source_name == 'spans' and span_types %}
        and span_type in ('{{ span_types | join("', '") }}')
    {%- endif %}
    {{ "union" if not loop.last }}
    {%- endfor %}
{% endmacro %}


{% macro in_unit_test() %}
    {#-
        Whether the node being rendered is a dbt unit test: it builds the model in full from its
        fixtures, so refs only an incremental branch needs must not be rendered (no fixture).
    -#}
    {{ return(model is mapping and model.get('resource_type') == 'unit_test') }}
{% endmacro %}


{% macro stamps_ref() %}
    {#-
        Render at parse time so dbt builds int_traces_stamped before this model. The trace
        rollups read its span_dates (span_days_predicate); fct_requests and fct_spans make it run
        before every test downstream of them, which reads it without a ref (test slices,
        `_stamps_relation`). Not in a unit test.
    -#}
    {%- if not in_unit_test() -%}{%- set relation = ref('int_traces_stamped') -%}{%- endif -%}
    {{ return('') }}
{% endmacro %}


{% macro loaded_base_refs() %}
    {#-
        Render at parse time so dbt knows a model reads the three base tables (only in its
        incremental branch; a unit test, which builds the model in full, has no fixture for them).
    -#}
    {%- if in_unit_test() -%}{{ return('') }}{%- endif -%}
    {%- set relations = [ref('base_lake__spans'), ref('base_lake__feedback'), ref('base_lake__annotations')] -%}
    {{ return('') }}
{% endmacro %}
