{#-
    A candidate eval run against production, per example (trace) and per stage: one row per
    eval run × trace × stage, with the production value (what the trace did in production, from
    fct_requests) and the candidate's (what `tracehouse eval import` landed), the difference and
    whether the candidate improved, worsened or matched production on that stage.

    Stages and their values (production <- candidate):
      answer_correctness  correctness label           <- correctness score           (higher is better)
      groundedness        groundedness label          <- groundedness score          (higher)
      retrieval_hit       is_retrieval_hit            <- retrieval_hit               (higher)
      tool_use            tool_use_correct label, else not is_required_tool_missing
                                                      <- tool_use_correct            (higher)
      citation            citation_quality label, else citations_valid / citations_total
                                                      <- citation_quality            (higher)
      cost                cost_usd                    <- cost_usd                    (lower)
      latency             duration_ms                 <- latency_ms                  (lower)
    Booleans count as 1 / 0. A stage where either side is unknown is `not_comparable`.
    A table rebuilt every run: eval results are few, and a late production label changes them.
-#}

{%- set stages = [
    {'stage': 'answer_correctness', 'higher': true,
     'production': 'requests.correctness', 'candidate': 'results.correctness'},
    {'stage': 'groundedness', 'higher': true,
     'production': 'requests.groundedness', 'candidate': 'results.groundedness'},
    {'stage': 'retrieval_hit', 'higher': true,
     'production': 'case when requests.is_retrieval_hit then 1.0 when not requests.is_retrieval_hit then 0.0 end',
     'candidate': 'case when results.retrieval_hit then 1.0 when not results.retrieval_hit then 0.0 end'},
    {'stage': 'tool_use', 'higher': true,
     'production': "case when coalesce(requests.tool_use_correct, not requests.is_required_tool_missing) then 1.0 when not coalesce(requests.tool_use_correct, not requests.is_required_tool_missing) then 0.0 end",
     'candidate': 'case when results.tool_use_correct then 1.0 when not results.tool_use_correct then 0.0 end'},
    {'stage': 'citation', 'higher': true,
     'production': 'coalesce(requests.citation_quality, cast(requests.citations_valid as double) / nullif(requests.citations_total, 0))',
     'candidate': 'results.citation_quality'},
    {'stage': 'cost', 'higher': false,
     'production': 'requests.cost_usd', 'candidate': 'results.cost_usd'},
    {'stage': 'latency', 'higher': false,
     'production': 'requests.duration_ms', 'candidate': 'results.latency_ms'},
] %}

with

results as (
    select * from {{ ref('int_eval_results') }}
),

requests as (
    select * from {{ ref('fct_requests') }}
),

stage_values as (
    {%- for s in stages %}
    select
        results.eval_run_id,
        results.trace_id,
        '{{ s.stage }}' as stage,
        {{ 'true' if s.higher else 'false' }} as is_higher_better,
        cast({{ s.production }} as double) as production_value,
        cast({{ s.candidate }} as double) as candidate_value
    from results
    left join requests
        on results.trace_id = requests.trace_id
    {{ "union all" if not loop.last }}
    {%- endfor %}
),

compared as (
    select
        *,
        candidate_value - production_value as delta,
        case
            when production_value is null or candidate_value is null then 'not_comparable'
            when candidate_value = production_value then 'unchanged'
            when (candidate_value > production_value) = is_higher_better then 'improved'
            else 'worsened'
        end as outcome
    from stage_values
),

final as (
    select
        {{ hash_key(['compared.eval_run_id', 'compared.trace_id', 'compared.stage']) }}
            as eval_comparison_id,
        compared.eval_run_id,
        compared.trace_id,
        compared.stage,
        compared.is_higher_better,
        compared.production_value,
        compared.candidate_value,
        compared.delta,
        compared.outcome,
        compared.outcome = 'improved' as is_improved,
        compared.outcome = 'worsened' as is_worsened,
        compared.outcome <> 'not_comparable' as is_comparable,
        results.candidate_versions,
        results.eval_dataset_id,
        results.evaluated_at,
        requests.trace_id is not null as is_known_trace,
        requests.trace_date,
        coalesce(requests.task_type, '(none)') as task_type,
        coalesce(requests.route_name, '(none)') as route_name,
        coalesce(requests.release_sha, '(none)') as release_sha,
        coalesce(requests.prompt_version, '(none)') as prompt_version,
        coalesce(requests.model_name, '(none)') as model_name,
        coalesce(requests.retriever_version, '(none)') as retriever_version
    from compared
    inner join results
        on compared.eval_run_id = results.eval_run_id
        and compared.trace_id = results.trace_id
    left join requests
        on compared.trace_id = requests.trace_id
)

select * from final
