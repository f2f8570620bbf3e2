{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_vanished_days() }}"],
    )
}}
{#-
    The failure taxonomy per day, route and version (release, prompt, model): how many traces
    carry each failure category, by label source. 'human' is the annotation's failure_category
    (one per annotated trace); 'rule' is each of the warehouse's rule-based failure_tags (a
    trace may carry several). Denominators: the segment's traces, and the traces the source
    could have labelled (annotated traces for 'human', every trace for 'rule').
    Only categories that occur get a row.
-#}

with

taxonomy as (
    select * from {{ ref('failure_taxonomy') }}
),

requests as (
    {{ mart_requests_in_scope(ref('fct_requests')) }}
),

day_lineage as (
    {{ mart_day_lineage('requests') }}
),

segmented_requests as (
    select
        trace_id,
        trace_date,
        {{ none_if_null('route_name') }} as route_name,
        {{ none_if_null('release_sha') }} as release_sha,
        {{ none_if_null('prompt_version') }} as prompt_version,
        {{ none_if_null('model_name') }} as model_name,
        coalesce(is_annotated, false) as is_annotated,
        failure_category,
        failure_tags
    from requests
),

segment_totals as (
    select
        trace_date,
        route_name,
        release_sha,
        prompt_version,
        model_name,
        count(*) as segment_trace_count,
        sum(case when is_annotated then 1 else 0 end) as annotated_trace_count
    from segmented_requests
    group by trace_date, route_name, release_sha, prompt_version, model_name
),

labels as (
    select
        trace_id,
        trace_date,
        route_name,
        release_sha,
        prompt_version,
        model_name,
        'human' as label_source,
        failure_category
    from segmented_requests
    where failure_category is not null
    union all
    select distinct
        segmented_requests.trace_id,
        segmented_requests.trace_date,
        segmented_requests.route_name,
        segmented_requests.release_sha,
        segmented_requests.prompt_version,
        segmented_requests.model_name,
        'rule' as label_source,
        tags.value as failure_category
    from segmented_requests
    {{ unnest_join('segmented_requests.failure_tags', 'tags') }}
),

aggregated as (
    select
        trace_date,
        label_source,
        failure_category,
        route_name,
        release_sha,
        prompt_version,
        model_name,
        count(*) as trace_count
    from labels
    where failure_category is not null
    group by
        trace_date, label_source, failure_category, route_name, release_sha, prompt_version,
        model_name
),

measured as (
    select
        {{ hash_key([
            'aggregated.trace_date', 'aggregated.label_source', 'aggregated.failure_category',
            'aggregated.route_name', 'aggregated.release_sha', 'aggregated.prompt_version',
            'aggregated.model_name',
        ]) }} as failure_segment_id,
        aggregated.trace_date,
        aggregated.label_source,
        aggregated.failure_category,
        taxonomy.description as failure_description,
        taxonomy.stage as failure_stage,
        taxonomy.failure_category is not null as is_known_category,
        aggregated.route_name,
        aggregated.release_sha,
        aggregated.prompt_version,
        aggregated.model_name,
        aggregated.trace_count,
        segment_totals.segment_trace_count,
        case
            when aggregated.label_source = 'human' then segment_totals.annotated_trace_count
            else segment_totals.segment_trace_count
        end as labelled_trace_count,
        {{ safe_divide(
            'aggregated.trace_count',
            "case when aggregated.label_source = 'human' then segment_totals.annotated_trace_count"
            ~ " else segment_totals.segment_trace_count end"
        ) }} as share_of_labelled
    from aggregated
    inner join segment_totals
        on aggregated.trace_date = segment_totals.trace_date
        and aggregated.route_name = segment_totals.route_name
        and aggregated.release_sha = segment_totals.release_sha
        and aggregated.prompt_version = segment_totals.prompt_version
        and aggregated.model_name = segment_totals.model_name
    left join taxonomy
        on aggregated.failure_category = taxonomy.failure_category
),

final as (
    select
        measured.*,
        {{ mart_lineage_columns('day_lineage') }}
    from measured
    inner join day_lineage
        on measured.trace_date = day_lineage.trace_date
)

{{ with_archived_days('final', 'trace_date') }}
