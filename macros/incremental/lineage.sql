{#-
    The incremental mechanism of the warehouse core, in one place.

    Every incremental model stores the lineage of its rows: the newest `ingest_time` of the lake
    rows each row was computed from (per source where a row reads several sources). Its own
    watermark is the max of that column already in `{{ this }}`. A run recomputes the keys
    (traces, or periods) touched by any lake row whose ingest_time is newer than the watermark
    minus `var('lookback_days')`, from ALL the rows of those keys, and replaces them
    (delete+insert). Because the rows of a key only ever grow with newer ingest times, that is
    exactly what a full refresh gives for those keys, and every other key is untouched.
-#}

{% macro watermark(column) %}
    {#- A scalar subquery: the model's own watermark on `column` minus the lookback. -#}
    (
        select coalesce(
            {{ days_before('max(' ~ column ~ ')', var('lookback_days')) }},
            {{ timestamp_literal('1900-01-01 00:00:00+00') }}
        )
        from {{ this }}
    )
{%- endmacro %}


{% macro newer_than_watermark(column, this_column=none) %}
    {#- True for a row whose `column` is newer than the watermark of `this_column` in `{{ this }}`. -#}
    {{ column }} > {{ watermark(this_column or column) }}
{%- endmacro %}


{% macro traces_touched_by_spans(spans_relation, this_column='last_span_ingest_at', span_types=none) %}
    {#-
        The trace ids with a span stamped (`_loaded_at`) in this model's load window
        (macros/incremental/loaded.sql), optionally of some span types only. `this_column` is
        kept for callers; the window no longer depends on ingest times.
    -#}
    select distinct trace_id
    from {{ spans_relation }}
    where {{ loaded_window(spans_relation, 'spans') }}
    {%- if span_types %}
        and span_type in ('{{ span_types | join("', '") }}')
    {%- endif %}
{%- endmacro %}
