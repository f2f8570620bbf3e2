{{
    config(
        materialized='incremental',
        unique_key='span_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ record_lake_files() }}"],
        meta={'test_slice': 'span_id', 'delete_by_span_days': true},
    )
}}
{#-
    A table, not a view (the staging layer's default), because every span-type model reads it
    and 10M spans must not be deduplicated thirteen times. Incremental by lake file: a run reads
    only the files it has not loaded yet and replaces the span ids whose latest copy changed,
    stamped `_loaded_at` (macros/incremental/loaded.sql). Equals a full refresh: the latest copy
    among the new rows and the stored one is the latest copy among all rows.
-#}

{{ lake_base('spans', 'span_id', 'end_time desc, duration_ms desc, attributes desc, status desc, event_time desc') }}
