{#-
    History kept after retention (`tracehouse lake expire`, python/tracehouse/retention.py).

    Before the detail of a day expires, its published aggregates are snapshotted into
    `<lake>/_archive/<model>/dt=YYYY-MM-DD/archived.parquet`. Each archived model (metric_daily,
    metric_hourly, the agg_* marts) ends with `{{ with_archived_days('final', day_expression) }}`
    instead of `select * from final`:
      - rows it computes for an archived day are dropped (that day's detail is partly gone);
      - the archived rows are added on a full refresh, and on an incremental run for archived
        days not stored yet; an incremental run never deletes or rewrites an archived day.
    The post-hooks that delete vanished days skip archived days (`and_not_archived`).
    Without an archive folder the macro is exactly `select * from final`.
-#}

{% macro archive_glob(model_name) %}
    {{ return(lake_path() ~ '/_archive/' ~ model_name ~ '/dt=*/*.parquet') }}
{% endmacro %}


{% macro has_archive(model_name) %}
    {#- False while compiling, and in unit tests (their fixtures are the whole input). -#}
    {%- if not execute or model.resource_type == 'unit_test' -%}{{ return(false) }}{%- endif -%}
    {{ return(adapter.dispatch('has_archive', 'tracehouse')(model_name)) }}
{% endmacro %}

{% macro duckdb__has_archive(model_name) %}
    {%- set n = run_query("select count(*) from glob('" ~ archive_glob(model_name) ~ "')").columns[0].values()[0] -%}
    {{ return(n > 0) }}
{% endmacro %}

{% macro default__has_archive(model_name) %}
    {#- Other engines: no archive reader yet, so expired days are recomputed from what is left. -#}
    {{ return(false) }}
{% endmacro %}


{% macro archived_rows(model_name) %}
    {{ return(adapter.dispatch('archived_rows', 'tracehouse')(model_name)) }}
{% endmacro %}

{% macro duckdb__archived_rows(model_name) -%}
    read_parquet('{{ archive_glob(model_name) }}', hive_partitioning = false, union_by_name = true)
{%- endmacro %}

{% macro spark__archived_rows(model_name) -%}
    {#- Never read today (spark has_archive is false); here so the project parses on Spark. -#}
    parquet.`{{ archive_glob(model_name) }}`
{%- endmacro %}

{% macro default__archived_rows(model_name) -%}
    {#- Never read (default has_archive is false); an error if it ever is. -#}
    {%- if execute -%}{{ not_ported('archived_rows') }}{%- endif -%}
{%- endmacro %}


{% macro with_archived_days(relation, day_expression) %}
    {{ return(adapter.dispatch('with_archived_days', 'tracehouse')(relation, day_expression)) }}
{% endmacro %}

{% macro default__with_archived_days(relation, day_expression) %}
select * from {{ relation }}
{%- endmacro %}

{% macro duckdb__with_archived_days(relation, day_expression) %}
{%- if not has_archive(this.name) %}
select * from {{ relation }}
{%- else %}
select * from {{ relation }}
where {{ day_expression }} not in (
    select distinct {{ day_expression }} from {{ archived_rows(this.name) }}
)
union all by name
select * from {{ archived_rows(this.name) }}
{%- if is_incremental() %}
where {{ day_expression }} not in (select distinct {{ day_expression }} from {{ this }})
{%- endif %}
{%- endif %}
{%- endmacro %}


{% macro and_not_archived(day_expression) %}
    {#- In a post-hook's where clause: `and <day> not in (archived days)`, or nothing. -#}
    {%- if has_archive(this.name) -%}
    and {{ day_expression }} not in (
        select distinct {{ day_expression }} from {{ archived_rows(this.name) }}
    )
    {%- endif -%}
{% endmacro %}


{#- The content-access audit log as `lake_raw.content_access` (on-run-start), see
    python/tracehouse/artifacts/audit.py. An empty, typed view when nothing was read yet. -#}
{% macro create_audit_views() %}
    {{ return(adapter.dispatch('create_audit_views', 'tracehouse')()) }}
{% endmacro %}

{% macro duckdb__create_audit_views() %}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {%- set glob = lake_path() ~ '/_audit/content_access/dt=*/*.parquet' -%}
    {%- set n_files = run_query("select count(*) from glob('" ~ glob ~ "')").columns[0].values()[0] -%}
    {%- set columns = [
        ['access_id', 'varchar'], ['accessed_at', 'timestamptz'], ['reader', 'varchar'],
        ['role', 'varchar'], ['trace_id', 'varchar'], ['span_id', 'varchar'],
        ['artifact_id', 'varchar'], ['artifact_kind', 'varchar'], ['reason', 'varchar'],
        ['outcome', 'varchar'],
    ] -%}
    {%- set items = [] -%}
    {%- for name, type in columns -%}
        {%- do items.append("cast(" ~ (name if n_files > 0 else "null") ~ " as " ~ type ~ ") as " ~ name) -%}
    {%- endfor -%}
    {%- if n_files > 0 -%}
        {%- set body = "select " ~ items | join(", ") ~ " from read_parquet('" ~ glob ~ "', hive_partitioning = false, union_by_name = true)" -%}
    {%- else -%}
        {%- set body = "select " ~ items | join(", ") ~ " where false" -%}
    {%- endif -%}
    {{ return("create schema if not exists lake_raw;\ncreate or replace view lake_raw.content_access as " ~ body) }}
{% endmacro %}

{% macro default__create_audit_views() %}
    {%- if execute -%}{{ not_ported('create_audit_views') }}{%- endif -%}
    {{ return('') }}
{% endmacro %}

{% macro spark__create_audit_views() %}
    {#- No Spark reader of the audit files yet, so an empty, typed view. -#}
    {%- if not execute -%}{{ return('') }}{%- endif -%}
    {{ return("create or replace view lake_raw.content_access as select "
        ~ "cast(null as string) as access_id, cast(null as timestamp) as accessed_at, "
        ~ "cast(null as string) as reader, cast(null as string) as role, "
        ~ "cast(null as string) as trace_id, cast(null as string) as span_id, "
        ~ "cast(null as string) as artifact_id, cast(null as string) as artifact_kind, "
        ~ "cast(null as string) as reason, cast(null as string) as outcome limit 0") }}
{% endmacro %}
