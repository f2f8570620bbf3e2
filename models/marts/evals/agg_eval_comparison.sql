{#-
    A candidate eval run against production per stage and task type: how many examples the
    candidate improved, worsened or matched, and the mean of each side over the comparable
    examples (sums and counts kept, so a BI tool can re-aggregate). "Run B improved answer
    correctness but worsened tool use" is `where eval_run_id = 'B'`.
-#}

with

comparisons as (
    select * from {{ ref('fct_eval_comparison') }}
),

final as (
    select
        {{ hash_key(['eval_run_id', 'stage', 'task_type']) }} as eval_stage_segment_id,
        eval_run_id,
        stage,
        task_type,
        max(case when is_higher_better then 1 else 0 end) = 1 as is_higher_better,
        count(*) as example_count,
        sum(case when is_comparable then 1 else 0 end) as comparable_count,
        sum(case when is_improved then 1 else 0 end) as improved_count,
        sum(case when is_worsened then 1 else 0 end) as worsened_count,
        sum(case when outcome = 'unchanged' then 1 else 0 end) as unchanged_count,
        sum(case when is_comparable then production_value end) as production_value_sum,
        sum(case when is_comparable then candidate_value end) as candidate_value_sum,
        avg(case when is_comparable then production_value end) as production_value_mean,
        avg(case when is_comparable then candidate_value end) as candidate_value_mean,
        avg(case when is_comparable then delta end) as delta_mean,
        case
            when sum(case when is_comparable then 1 else 0 end) = 0 then 'not_comparable'
            when sum(case when is_improved then 1 else 0 end)
                > sum(case when is_worsened then 1 else 0 end) then 'improved'
            when sum(case when is_improved then 1 else 0 end)
                < sum(case when is_worsened then 1 else 0 end) then 'worsened'
            else 'unchanged'
        end as verdict
    from comparisons
    group by eval_run_id, stage, task_type
)

select * from final
