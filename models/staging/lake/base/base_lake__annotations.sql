{{
    config(
        materialized='incremental',
        unique_key='annotation_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ record_lake_files() }}"],
    )
}}
{#-
    Every annotations row once (latest ingest_time per annotation_id), stamped `_loaded_at`: a table so that
    an incremental run can tell which traces new annotations rows touch. Incremental by lake file, as
    base_lake__spans (macros/incremental/loaded.sql).
-#}

{{ lake_base('annotations', 'annotation_id', 'label_time desc, correctness desc, failure_category') }}
