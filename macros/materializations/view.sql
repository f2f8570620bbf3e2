{#-
    Views on DuckDB: kept, not re-created, when their SQL did not change.

    dbt's own view materialization re-creates every view on every run (create a temporary view,
    rename the old one away, rename the new one in, drop the old one: five statements and a
    transaction per view), although a view holds no data. Here a view is created with
    `create or replace view` (atomic in DuckDB) and carries the digest of its compiled SQL as its
    comment (`tracehouse:<md5>`); persist_docs is off in this project, so nothing else writes
    view comments.

    A run keeps a view whose stored digest equals the digest of the SQL it compiled now, only when
    the environment has TRACEHOUSE_KEEP_UNCHANGED_VIEWS=1: `tracehouse run` sets it on an
    incremental run whose dbt project is unchanged since the last good run (the same condition
    as the test slices, tracehouse.pipeline.step_build). A changed project, a full refresh and
    `dbt build` by hand re-create every view, as dbt does: a view's SQL may be unchanged while
    the columns of a relation it selects `*` from changed, and DuckDB binds a view's columns when
    it is created. The view's data tests run either way.
    Other engines use their adapter's view materialization.
-#}

{% macro view_digest(sql) %}
    {{ return('tracehouse:' ~ local_md5(sql)) }}
{% endmacro %}


{% macro stored_view_digest(relation) %}
    {#- The comment of view `relation` (none if it has none or does not exist). -#}
    {%- set rows = run_query(
        "select comment from duckdb_views() where database_name = '" ~ relation.database
        ~ "' and schema_name = '" ~ relation.schema ~ "' and view_name = '" ~ relation.identifier ~ "'"
    ) -%}
    {{ return(rows.columns[0].values()[0] if rows.rows | length > 0 else none) }}
{% endmacro %}


{% macro keep_unchanged_views() %}
    {{ return(env_var('TRACEHOUSE_KEEP_UNCHANGED_VIEWS', '') in ('1', 'true') and not should_full_refresh()) }}
{% endmacro %}


{%- materialization view, adapter='duckdb' -%}
    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set digest = view_digest(sql) -%}
    {%- set keep = existing_relation is not none and existing_relation.is_view
        and keep_unchanged_views() and stored_view_digest(target_relation) == digest -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}

    {%- if keep -%}
        {#- No statement opens a transaction here unless a hook inside one renders to SQL. -#}
        {%- set in_transaction = (pre_hooks | selectattr('transaction', 'equalto', true) | list)
            + (post_hooks | selectattr('transaction', 'equalto', true) | list) -%}
        {%- set opened = [] -%}
        {%- for hook in in_transaction -%}
            {%- set rendered = render(hook.get('sql')) | trim -%}
            {%- if rendered | length > 0 -%}
                {%- call statement(auto_begin=true) -%}{{ rendered }}{%- endcall -%}
                {%- do opened.append(hook) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- call noop_statement('main', 'KEEP (view SQL unchanged)') -%}
            -- {{ target_relation }} kept: its SQL is unchanged ({{ digest }})
        {%- endcall -%}
        {%- if opened -%}{{ adapter.commit() }}{%- endif -%}
    {%- else -%}
        {{ run_hooks(pre_hooks, inside_transaction=True) }}
        {%- if existing_relation is not none and not existing_relation.is_view -%}
            {{ adapter.drop_relation(existing_relation) }}
        {%- endif -%}
        {%- call statement('main') -%}
            create or replace view {{ target_relation }} as (
                {{ sql }}
            );
            comment on view {{ target_relation }} is '{{ digest }}'
        {%- endcall -%}
        {%- do persist_docs(target_relation, model) -%}
        {{ run_hooks(post_hooks, inside_transaction=True) }}
        {{ adapter.commit() }}
    {%- endif -%}

    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization -%}
