"""``tracehouse eval export``: the eval candidates of the published marts as eval examples.

One JSON object per line (``examples.jsonl``), one example per candidate trace, read from the
published ``fct_eval_candidates``, ``fct_requests`` and ``fct_spans``: nothing is recomputed.
A second file, ``langfuse_dataset_items.jsonl``, holds the same examples in the shape of
Langfuse dataset items (``id``, ``input``, ``expectedOutput``, ``metadata``,
``sourceTraceId``). ``docs/review.md`` maps the fields to Langfuse, promptfoo and OpenAI Evals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tracehouse.errors import TracehouseError

EXAMPLES_FILE = "examples.jsonl"
LANGFUSE_FILE = "langfuse_dataset_items.jsonl"
MANIFEST_FILE = "manifest.json"
DEFAULT_DATASET = "eval-candidates"
EXAMPLE_FORMAT = "tracehouse-eval-example/1"


class ExportError(TracehouseError, RuntimeError):
    """The published marts needed for an export are missing."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote."""

    examples: int
    promoted: int
    files: list[Path]


def _published(folder: Path, name: str) -> str:
    from tracehouse.publication import mart_glob

    path = folder / f"{name}.parquet"  # a file, or a folder of one file per day
    if not path.exists():
        raise ExportError(f"no published {name} at {path}: run `tracehouse run` first")
    return mart_glob(path).replace("'", "''")


def _examples_sql(warehouse: Path) -> str:
    from tracehouse.publication import current_folder

    # The publication is resolved once, so the three marts come from the same run.
    folder = current_folder(warehouse) or warehouse / "marts"
    candidates = _published(folder, "fct_eval_candidates")
    requests = _published(folder, "fct_requests")
    spans = _published(folder, "fct_spans")
    return f"""
        with
        candidates as (select * from read_parquet('{candidates}')),
        requests as (select * from read_parquet('{requests}')),
        roots as (
            select trace_id, any_value(user_query_redacted) as user_query_redacted,
                any_value(entrypoint) as entrypoint, any_value(locale) as locale
            from read_parquet('{spans}')
            where span_type = 'request' and parent_span_id is null
            group by trace_id
        )
        select
            c.trace_id as example_id,
            '{EXAMPLE_FORMAT}' as format,
            coalesce(c.eval_dataset_id, $dataset) as eval_dataset_id,
            c.trace_id,
            {{
                'query_redacted': roots.user_query_redacted,
                'artifact_refs': c.artifact_refs,
                'task_type': c.task_type,
                'entrypoint': roots.entrypoint,
                'locale': roots.locale,
                'tenant_id': c.tenant_id,
                'conversation_id': c.conversation_id,
                'request_id': c.request_id,
                'event_time': strftime(c.event_time, '%Y-%m-%dT%H:%M:%S.%fZ')
            }} as input,
            {{
                'relevant_chunk_ids': r.relevant_chunk_ids,
                'required_tools': r.required_tools,
                'production_failure_category': c.failure_category
            }} as expected,
            {{
                'release_sha': c.release_sha, 'app_version': c.app_version,
                'prompt_version': c.prompt_version,
                'system_prompt_version': c.system_prompt_version,
                'retriever_version': c.retriever_version, 'index_version': c.index_version,
                'embedding_version': c.embedding_version,
                'reranker_version': c.reranker_version, 'model_name': c.model_name,
                'model_provider': c.model_provider, 'route_name': c.route_name,
                'validator_versions': c.validator_versions, 'tool_versions': c.tool_versions
            }} as replay_versions,
            {{
                'tools_called': r.tools_called, 'required_tools': r.required_tools,
                'missing_required_tools': r.missing_required_tools,
                'tool_versions': c.tool_versions, 'tool_call_count': r.tool_call_count,
                'tool_error_count': r.tool_error_count
            }} as tools,
            {{
                'status': c.status, 'final_status': c.final_status,
                'is_successful_task': c.is_successful_task, 'cost_usd': c.cost_usd,
                'duration_ms': c.duration_ms, 'is_retrieval_hit': r.is_retrieval_hit,
                'citations_total': r.citations_total, 'citations_valid': r.citations_valid,
                'failure_tags': c.failure_tags
            }} as production,
            {{
                'has_thumbs_up': r.has_thumbs_up, 'has_thumbs_down': r.has_thumbs_down,
                'has_escalation': r.has_escalation, 'has_regenerate': r.has_regenerate,
                'has_task_abandoned': r.has_task_abandoned, 'feedback_count': r.feedback_count
            }} as feedback,
            {{
                'failure_category': c.failure_category, 'correctness': r.correctness,
                'groundedness': r.groundedness, 'citation_quality': r.citation_quality,
                'completeness': r.completeness, 'tool_use_correct': r.tool_use_correct,
                'policy_compliant': r.policy_compliant, 'label_note': c.label_note
            }} as labels,
            {{
                'candidate_reasons': c.candidate_reasons,
                'sampled_for_reasons': c.sampled_for_reasons,
                'priority_score': c.priority_score, 'promotion_reason': c.promotion_reason,
                'promoted_at': strftime(c.promoted_at, '%Y-%m-%dT%H:%M:%S.%fZ'),
                'trace_date': c.trace_date
            }} as selection,
            c.priority_score,
            c.sample_key
        from candidates as c
        left join requests as r on c.trace_id = r.trace_id
        left join roots on c.trace_id = roots.trace_id
        where ($only_dataset is null or c.eval_dataset_id = $only_dataset)
            and ($reason is null or list_contains(c.candidate_reasons, $reason))
        order by c.priority_score desc, c.sample_key, c.trace_id
        limit $limit
    """


def export_examples(
    warehouse: Path | str,
    out: Path | str,
    *,
    dataset: str = DEFAULT_DATASET,
    only_dataset: str | None = None,
    reason: str | None = None,
    limit: int | None = None,
) -> ExportReport:
    """Write the eval candidates of ``warehouse`` as eval examples into the folder ``out``.

    ``dataset`` names the set of examples that were sampled but never promoted (a promoted
    trace keeps its ``eval_dataset_id``); ``only_dataset`` keeps the examples promoted into
    that set, ``reason`` those with that candidate reason (``promoted``, ``failure``, ...).
    Returns the counts and the files written (examples, Langfuse items, manifest).
    """
    warehouse, out = Path(warehouse), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        params = {"dataset": dataset, "only_dataset": only_dataset, "reason": reason,
                  "limit": limit if limit is not None else 2**62}
        con.execute(f"CREATE TEMP TABLE examples AS {_examples_sql(warehouse)}", params)
        n, promoted = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE list_contains(selection.candidate_reasons, "
            "'promoted')) FROM examples"
        ).fetchall()[0]
        examples_path = out / EXAMPLES_FILE
        langfuse_path = out / LANGFUSE_FILE
        con.execute(
            "COPY (SELECT * EXCLUDE (priority_score, sample_key) FROM examples) "
            f"TO '{_q(examples_path)}' (FORMAT JSON)"
        )
        con.execute(
            f"""COPY (
                SELECT
                    'th-' || trace_id AS id,
                    eval_dataset_id AS datasetName,
                    input,
                    expected AS expectedOutput,
                    {{'replay_versions': replay_versions, 'tools': tools,
                      'production': production, 'feedback': feedback, 'labels': labels,
                      'selection': selection}} AS metadata,
                    trace_id AS sourceTraceId
                FROM examples
            ) TO '{_q(langfuse_path)}' (FORMAT JSON)"""
        )
    finally:
        con.close()
    manifest = {
        "format": EXAMPLE_FORMAT,
        "exported_at": datetime.now(UTC).isoformat(),
        "warehouse": str(warehouse),
        "examples": int(n),
        "promoted": int(promoted),
        "filters": {"only_dataset": only_dataset, "reason": reason, "limit": limit},
        "files": [EXAMPLES_FILE, LANGFUSE_FILE],
    }
    manifest_path = out / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportReport(int(n), int(promoted), [examples_path, langfuse_path, manifest_path])


def _q(path: Path) -> str:
    return str(path).replace("'", "''")
