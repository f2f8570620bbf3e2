{% macro latest_per_id(relation, id_column, tie_breakers) %}
    {#-
        The contract's dedup rule: one row per id, the one with the latest ingest_time. Ties
        (the same row delivered twice with the same ingest_time) break on `tie_breakers`, the
        row's own content, so that every build picks the same row whatever order files are read.
        The result may carry a helper column `_row_rank`: select the columns you need from it.
    -#}
    {{ return(adapter.dispatch('latest_per_id', 'tracehouse')(relation, id_column, tie_breakers)) }}
{% endmacro %}

{% macro duckdb__latest_per_id(relation, id_column, tie_breakers) %}
    {#-
        Only ids delivered more than once need ranking: the ids with copies are found by a
        group by (cheap), every other row passes untouched (anti join), and the window runs over
        the copies only (semi join). Same winner as ranking every row: a window over all rows
        sorts the whole lake, which dominated the staging build. `is not distinct from` keeps
        the NULL id a group of its own, as partition by does. The relation is read three times;
        `not materialized` keeps DuckDB from buffering it (re-reading the Parquet is cheaper).
    -#}
    with

    landed_rows as not materialized (
        select * from {{ relation }}
    ),

    ids_with_copies as (
        select {{ id_column }} as _copied_id
        from landed_rows
        group by {{ id_column }}
        having count(*) > 1
    )

    select *
    from landed_rows
    anti join ids_with_copies
        on landed_rows.{{ id_column }} is not distinct from ids_with_copies._copied_id
    union all
    select *
    from (
        select *
        from landed_rows
        semi join ids_with_copies
            on landed_rows.{{ id_column }} is not distinct from ids_with_copies._copied_id
    ) as copies
    qualify row_number() over (
        partition by {{ id_column }}
        order by ingest_time desc nulls last, {{ tie_breakers }}
    ) = 1
{% endmacro %}

{% macro default__latest_per_id(relation, id_column, tie_breakers) %}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ id_column }}
                order by ingest_time desc nulls last, {{ tie_breakers }}
            ) as _row_rank
        from {{ relation }}
    ) as ranked
    where _row_rank = 1
{% endmacro %}
