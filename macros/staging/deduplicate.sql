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
    select *
    from {{ relation }}
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
