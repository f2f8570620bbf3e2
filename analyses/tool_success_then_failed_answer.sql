{#-
    Tool successes followed by a failed answer: every tool call of the trace succeeded, yet the
    answer failed (not a successful task: root error, final_status not success, thumbs-down,
    escalation, abandonment, or annotated correctness < 0.5). The tools worked, so the failure
    is in what the model did with their results (or in a tool it should also have called:
    missing_required_tools).

    One row per trace, with which of the failure signals fired, the tools and their versions,
    and the versions in force; newest first.

    Run:
        dbt compile --select tool_success_then_failed_answer \
            --vars '{start_date: "2026-01-01", end_date: "2026-01-31"}'
        then run target/compiled/tracehouse/analyses/tool_success_then_failed_answer.sql
        against the warehouse. Dates are optional (default: every day).
-#}

{%- set start_date = var('start_date', '') %}
{%- set end_date = var('end_date', '') %}

with

requests as (
    select * from {{ ref('fct_requests') }}
),

final as (
    select
        trace_date,
        trace_id,
        task_type,
        intent,
        route_name,
        model_name,
        prompt_version,
        planner_version,
        tools_called,
        tool_versions,
        tool_call_count,
        required_tools,
        required_tools_source,
        missing_required_tools,
        status,
        final_status,
        has_thumbs_down,
        has_escalation,
        has_task_abandoned,
        correctness,
        tool_use_correct,
        failure_category,
        failure_tags,
        cost_usd,
        duration_ms
    from requests
    where tool_call_count > 0
        and tool_error_count = 0
        and tool_timeout_count = 0
        and not is_successful_task
        {%- if start_date %}
        and trace_date >= cast('{{ start_date }}' as date)
        {%- endif %}
        {%- if end_date %}
        and trace_date <= cast('{{ end_date }}' as date)
        {%- endif %}
)

select * from final
order by trace_date desc, trace_id
