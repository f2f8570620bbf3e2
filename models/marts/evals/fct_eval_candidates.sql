{{
    config(
        materialized='incremental',
        unique_key='trace_date',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
        post_hook=["{{ delete_vanished_days() }}"],
        meta={'watermark_upstreams': {
            'versions_daily': 'int_versions_daily',
            'versions_first_seen': 'int_versions_first_seen',
        }},
    )
}}
{#-
    Production traces proposed for the eval set: one row per selected trace, with why it was
    proposed, how urgent it is, and everything needed to replay it (frozen versions, artifact
    refs). Sampling is biased to risky or novel traffic and fully deterministic: a trace's
    sample key is md5(trace_id), never random(), so two builds of the same data propose the
    same traces.

    Per day and reason, the traces with the reason whose sample key is below the reason's rate
    are ranked by sample key and the first `cap` are taken. A trace is a candidate when any
    reason takes it. Override the policy with the var `eval_candidate_policy`
    ({reason: {rate, cap, weight}}, any subset).

    Incremental on trace_date (delete+insert): a day's sample is rebuilt, from all its requests,
    when anything it depends on changed since this model's watermark:
      - the day's requests: a day that int_versions_daily rebuilt (the days of the traces the
        base tables wrote, and every day whose trace count changed), and the days of the
        traces the base tables wrote (feedback, annotations, artifact refs are per trace);
      - the versions first seen: for every version whose first-seen date changed
        (int_versions_first_seen keeps the previous date), the days from the older date to the
        newer one plus `eval_novel_version_days`; the data's first day likewise;
      - the previous request of a conversation: every day of a conversation that has a trace the
        base tables wrote.
    A day with no trace left is deleted (post-hook). Not covered: a trace whose conversation_id
    changes, or that expires (`tracehouse lake expire`), leaves its old conversation's next
    request unrebuilt; a full refresh recomputes it.
-#}

{%- set default_policy = {
    'promoted':       {'rate': 1.0,  'cap': 100000, 'weight': 10},
    'failure':        {'rate': 1.0,  'cap': 200, 'weight': 5},
    'thumbs_down':    {'rate': 1.0,  'cap': 200, 'weight': 4},
    'escalation':     {'rate': 1.0,  'cap': 100, 'weight': 4},
    'novel_version':  {'rate': 0.25, 'cap': 50,  'weight': 3},
    'rule_tag':       {'rate': 0.5,  'cap': 100, 'weight': 2},
    'high_cost':      {'rate': 1.0,  'cap': 50,  'weight': 2},
    'long_latency':   {'rate': 1.0,  'cap': 50,  'weight': 2},
    'route_change':   {'rate': 0.5,  'cap': 50,  'weight': 2},
    'baseline':       {'rate': 0.02, 'cap': 50,  'weight': 1},
} %}
{#- the var overrides the defaults reason by reason, key by key -#}
{%- set overrides = var('eval_candidate_policy', {}) %}
{%- set policy = {} %}
{%- for reason, defaults in default_policy.items() %}
    {%- set merged = {} %}
    {%- do merged.update(defaults) %}
    {%- do merged.update(overrides.get(reason, {})) %}
    {%- do policy.update({reason: merged}) %}
{%- endfor %}
{%- set reason_order = [
    'promoted', 'failure', 'thumbs_down', 'escalation', 'novel_version', 'rule_tag', 'high_cost',
    'long_latency', 'route_change', 'baseline',
] %}
{#- baseline is a reason only for the traces it sampled; every other reason is a property -#}
{%- set has_reason = {} %}
{%- set reason_items = [] %}
{%- set sampled_items = [] %}
{%- for r in reason_order %}
    {%- if r == 'baseline' %}
        {%- do has_reason.update({r: 'selected.is_sampled_for_baseline'}) %}
    {%- else %}
        {%- do has_reason.update({r: 'flagged.is_' ~ r ~ '_reason'}) %}
    {%- endif %}
    {%- do reason_items.append("case when " ~ has_reason[r] ~ " then '" ~ r ~ "' end") %}
    {%- do sampled_items.append("case when selected.is_sampled_for_" ~ r ~ " then '" ~ r ~ "' end") %}
{%- endfor %}
{%- set novel_version_days = var('eval_novel_version_days', 2) %}
{%- set tail_quantile = var('eval_tail_quantile', 0.95) %}
{%- set version_columns = [
    'release_sha', 'prompt_version', 'retriever_version', 'index_version', 'reranker_version',
    'model_name',
] %}

{%- set is_unit_test = in_unit_test() %}
{#- only the days whose inputs moved, where the engine plans it (eval_candidates_by_day) -#}
{%- set by_day = is_incremental() and eval_candidates_by_day() %}
{%- if not is_unit_test %}
    {{- loaded_base_refs() }}
    {%- set version_days_relation = ref('int_versions_daily') %}
    {%- set first_seen_relation = ref('int_versions_first_seen') %}
    {#- the span floor's source (mart_span_floor_condition), whether or not it is used -#}
    {%- set stamped_relation = ref('int_traces_stamped') %}
{%- endif %}

{#- fct_requests read where it is needed (narrow), not a CTE the engine materialises whole -#}
{%- set all_requests = ref('fct_requests') %}

{%- set scope_ctes %}
{% if by_day %}
touched_traces as (
    {{ traces_loaded() }}
),

touched_conversations as (
    select distinct conversation_id
    from {{ all_requests }}
    where trace_id in (select trace_id from touched_traces)
        and conversation_id is not null
),

first_seen_changes as (
    select
        coalesce(first_seen_date, previous_first_seen_date) as changed_date,
        coalesce(previous_first_seen_date, first_seen_date) as other_date
    from {{ first_seen_relation }}
    where {{ loaded_window(first_seen_relation, 'versions_first_seen') }}
),

stored_days as (
    select trace_date
    from {{ version_days_relation }}
    where version_dimension = '(day)'
),

days_to_build as (
    {#- the days int_versions_daily rebuilt: touched traces' days and days whose count changed -#}
    select trace_date
    from {{ version_days_relation }}
    where {{ loaded_window(version_days_relation, 'versions_daily') }}
    union
    select trace_date
    from {{ all_requests }}
    where trace_id in (select trace_id from touched_traces)
    union
    select trace_date
    from {{ all_requests }}
    where conversation_id in (select conversation_id from touched_conversations)
    union
    -- novelty: from the older to the newer first-seen date, plus the novelty window
    select stored_days.trace_date
    from stored_days
    inner join first_seen_changes
        on (
            {{ days_between('first_seen_changes.changed_date', 'stored_days.trace_date') }} >= 0
            or {{ days_between('first_seen_changes.other_date', 'stored_days.trace_date') }} >= 0
        )
        and {{ days_between('first_seen_changes.changed_date', 'stored_days.trace_date') }}
            < {{ novel_version_days }}
        and {{ days_between('first_seen_changes.other_date', 'stored_days.trace_date') }}
            < {{ novel_version_days }}
),

{% endif %}
requests as (
    select * from {{ all_requests }}
    {%- if by_day %}
    where trace_date in (select trace_date from days_to_build)
    {%- endif %}
)
{%- endset %}
{#- spans are read from the first span day of the requests in scope (a literal: see the macro) -#}
{%- set span_floor = mart_span_floor_condition('event_time', scope_ctes=scope_ctes)
    if by_day else '1 = 1' %}

with

{{ scope_ctes }},

conversation_requests as (
    {#- every request of the conversations in scope, whatever its day: the previous route -#}
    select * from {{ all_requests }}
    {%- if by_day %}
    where conversation_id in (select conversation_id from requests)
    {%- endif %}
),

spans as (
    {#- the span envelope is all this model reads: the base table, not the wide fct_spans view -#}
    select * from {{ ref('base_lake__spans') }}
    where {{ span_floor }}
),

routing_spans as (
    select * from {{ ref('stg_lake__model_routing_spans') }}
),

reviews as (
    select * from {{ ref('int_traces_joined_to_annotations') }}
),

versions as (
    select * from {{ ref('dim_versions') }}
),

daily_thresholds as (
    select
        trace_date,
        {{ percentile('cost_usd', tail_quantile) }} as cost_usd_threshold,
        {{ percentile('duration_ms', tail_quantile) }} as duration_ms_threshold
    from requests
    group by trace_date
),

version_first_seen as (
    select
        version_dimension,
        version_value,
        {{ utc_date('first_seen_at') }} as first_seen_date
    from versions
    where scope_key = 'all'
        and version_dimension in ('{{ version_columns | join("', '") }}')
),

novel_traces as (
    {%- for column in version_columns %}
    select requests.trace_id
    from requests
    inner join version_first_seen
        on version_first_seen.version_dimension = '{{ column }}'
        and requests.{{ column }} = version_first_seen.version_value
    where {{ days_between('version_first_seen.first_seen_date', 'requests.trace_date') }}
        < {{ novel_version_days }}
        {# the data's first days are not "novel": everything is first seen then -#}
        and version_first_seen.first_seen_date > (select min(trace_date) from {{ all_requests }})
    {{ "union" if not loop.last }}
    {%- endfor %}
),

fallback_traces as (
    select distinct trace_id
    from routing_spans
    where reason = 'fallback'
        and trace_id in (select trace_id from requests)
        and {{ span_floor }}
),

previous_routes as (
    select
        trace_id,
        lag(route_name) over (
            partition by conversation_id
            order by event_time, trace_id
        ) as previous_route_name
    from conversation_requests
    where conversation_id is not null
),

flagged as (
    select
        requests.*,
        {{ hash_fraction('requests.trace_id', 'eval') }} as sample_key,
        requests.eval_dataset_id is not null as is_promoted_reason,
        (
            coalesce(requests.is_error, false)
            or requests.final_status = 'failed'
            or requests.failure_category is not null
            or requests.correctness < 0.5
        ) as is_failure_reason,
        coalesce(requests.has_thumbs_down, false) as is_thumbs_down_reason,
        coalesce(requests.has_escalation, false) as is_escalation_reason,
        novel_traces.trace_id is not null as is_novel_version_reason,
        coalesce({{ list_length('requests.failure_tags') }}, 0) > 0 as is_rule_tag_reason,
        coalesce(requests.cost_usd >= daily_thresholds.cost_usd_threshold and requests.cost_usd > 0, false)
            as is_high_cost_reason,
        coalesce(requests.duration_ms >= daily_thresholds.duration_ms_threshold, false)
            as is_long_latency_reason,
        (
            fallback_traces.trace_id is not null
            or coalesce(previous_routes.previous_route_name <> requests.route_name, false)
        ) as is_route_change_reason,
        true as is_baseline_reason
    from requests
    left join daily_thresholds
        on requests.trace_date = daily_thresholds.trace_date
    left join novel_traces
        on requests.trace_id = novel_traces.trace_id
    left join fallback_traces
        on requests.trace_id = fallback_traces.trace_id
    left join previous_routes
        on requests.trace_id = previous_routes.trace_id
),

trace_reasons as (
    {%- for reason in reason_order %}
    select
        trace_id,
        trace_date,
        sample_key,
        '{{ reason }}' as reason
    from flagged
    where is_{{ reason }}_reason
        and sample_key < {{ policy[reason]['rate'] }}
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

ranked_reasons as (
    select
        trace_id,
        trace_date,
        reason,
        row_number() over (
            partition by trace_date, reason
            order by sample_key, trace_id
        ) as reason_rank
    from trace_reasons
),

taken_reasons as (
    select
        trace_id,
        reason
    from ranked_reasons
    where
        {%- for reason in reason_order %}
        (reason = '{{ reason }}' and reason_rank <= {{ policy[reason]['cap'] }})
        {{- " or" if not loop.last }}
        {%- endfor %}
),

selected as (
    select
        trace_id,
        {%- for reason in reason_order %}
        max(case when reason = '{{ reason }}' then 1 else 0 end) = 1
            as is_sampled_for_{{ reason }}{{ "," if not loop.last }}
        {%- endfor %}
    from taken_reasons
    group by trace_id
),

artifacts as (
    select
        spans.trace_id,
        {{ flatten_list_agg('spans.artifact_refs', 'spans.event_time, spans.span_id') }} as artifact_refs
    from spans
    inner join selected
        on spans.trace_id = selected.trace_id
    group by spans.trace_id
),

final as (
    select
        flagged.trace_id,
        flagged.trace_date,
        flagged.event_time,
        flagged.request_id,
        flagged.conversation_id,
        flagged.tenant_id,
        flagged.environment,
        flagged.task_type,
        {{ list_of_present(reason_items) }} as candidate_reasons,
        {{ list_of_present(sampled_items) }} as sampled_for_reasons,
        (
            {%- for reason in reason_order %}
            case when {{ has_reason[reason] }} then {{ policy[reason]['weight'] }} else 0 end
            {{- " +" if not loop.last }}
            {%- endfor %}
        ) as priority_score,
        flagged.sample_key,
        flagged.release_sha,
        flagged.app_version,
        flagged.prompt_version,
        flagged.system_prompt_version,
        flagged.retriever_version,
        flagged.index_version,
        flagged.embedding_version,
        flagged.reranker_version,
        flagged.model_name,
        flagged.model_provider,
        flagged.route_name,
        flagged.validator_versions,
        flagged.tool_versions,
        artifacts.artifact_refs,
        flagged.status,
        flagged.final_status,
        flagged.is_successful_task,
        flagged.cost_usd,
        flagged.duration_ms,
        flagged.has_thumbs_down,
        flagged.has_escalation,
        flagged.is_annotated,
        flagged.correctness,
        flagged.failure_category,
        flagged.failure_tags,
        flagged.eval_dataset_id,
        reviews.promoted_at,
        reviews.promotion_reason,
        reviews.label_note
    from flagged
    inner join selected
        on flagged.trace_id = selected.trace_id
    left join artifacts
        on flagged.trace_id = artifacts.trace_id
    left join reviews
        on flagged.trace_id = reviews.trace_id
)

select * from final
