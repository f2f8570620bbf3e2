{{
    config(
        materialized='incremental',
        unique_key='feedback_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ record_lake_files() }}"],
    )
}}
{#-
    Every feedback row once (latest ingest_time per feedback_id), stamped `_loaded_at`: a table so that
    an incremental run can tell which traces new feedback rows touch. Incremental by lake file, as
    base_lake__spans (macros/incremental/loaded.sql).
-#}

{{ lake_base('feedback', 'feedback_id', 'event_time desc, feedback_type, value desc') }}
