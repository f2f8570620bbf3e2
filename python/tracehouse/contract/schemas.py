"""The event contract v1 as code: one pyarrow schema per dataset, the enums, the attribute keys.

This module is the ground floor of tracehouse: it imports nothing of ours, and everything that
writes or reads events goes through it. It mirrors ``shared/contract/EVENTS.md`` exactly; only
additive changes are allowed within v1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pyarrow as pa

SCHEMA_VERSION: Final = "1"
SUPPORTED_SCHEMA_VERSIONS: Final = frozenset({SCHEMA_VERSION})

TIMESTAMP: Final = pa.timestamp("us", tz="UTC")

# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------

SPAN_TYPES: Final = (
    "request",
    "classify",
    "query_rewrite",
    "embedding",
    "retrieval",
    "rerank",
    "context_assembly",
    "model_routing",
    "llm",
    "tool_planning",
    "tool_call",
    "postprocess",
    "delivery",
)
SPAN_STATUSES: Final = ("ok", "error", "timeout", "blocked", "degraded")
ENVIRONMENTS: Final = ("prod", "staging", "dev")
CACHE_STATUSES: Final = ("hit", "miss", "bypass")
FEEDBACK_TYPES: Final = (
    "thumbs_up",
    "thumbs_down",
    "edit",
    "regenerate",
    "rephrase",
    "copy",
    "citation_click",
    "escalation",
    "task_completed",
    "task_abandoned",
    "follow_up",
)
FEEDBACK_SOURCES: Final = ("ui", "api", "support")
FAILURE_CATEGORIES: Final = (
    "retrieval_miss",
    "stale_knowledge",
    "wrong_tool",
    "missing_tool_call",
    "tool_execution_failure",
    "hallucination_with_context",
    "citation_mismatch",
    "format_parse",
    "guardrail_false_positive",
    "guardrail_false_negative",
    "timeout_degradation",
    "route_model_mismatch",
    "context_truncation",
)
# What an annotation is (additive optional column `annotation_kind`; null means `label`):
# a label of the production answer, a promotion into an eval set, or one example's result of a
# candidate eval run (never a label of the production answer).
ANNOTATION_KINDS: Final = ("label", "promotion", "eval_result")
# Enum-valued attribute keys (documented in the contract's span-type table).
ENTRYPOINTS: Final = ("chat", "api", "workflow", "background")
FINAL_STATUSES: Final = ("success", "degraded", "blocked", "failed")
RETRIEVER_TYPES: Final = ("vector", "keyword", "hybrid", "graph", "sql")
EXCLUSION_REASONS: Final = ("budget", "dedupe", "relevance_threshold", "policy")
ROUTING_REASONS: Final = ("cost", "complexity", "tenant_tier", "experiment", "fallback")
FINISH_REASONS: Final = ("stop", "length", "tool_calls", "content_filter", "error")
VALIDATOR_NAMES: Final = (
    "citation_check",
    "json_schema",
    "moderation",
    "policy",
    "pii_filter",
    "formatter",
)

# --------------------------------------------------------------------------------------------
# Attribute keys per span type. Types: str, int, num, bool, obj, list_str, list_num, list_obj.
# --------------------------------------------------------------------------------------------

ATTRIBUTE_KEYS: Final[dict[str, dict[str, str]]] = {
    "request": {
        "entrypoint": "str",
        "locale": "str",
        "user_query_redacted": "str",
        "final_status": "str",
        "experiment_flags": "obj",
    },
    "classify": {
        "classifier_version": "str",
        "labels": "list_str",
        "confidences": "list_num",
        "route_selected": "str",
        "policy_id": "str",
        "fallback": "bool",
    },
    "query_rewrite": {
        "strategy_version": "str",
        "original_query_hash": "str",
        "rewritten_query_redacted": "str",
        "subquery_count": "int",
        "confidence": "num",
    },
    "embedding": {
        "embedding_model": "str",
        "embedding_version": "str",
        "input_tokens": "int",
        "truncated": "bool",
        "dimension": "int",
        "cache_hit": "bool",
    },
    "retrieval": {
        "retriever_type": "str",
        "index_version": "str",
        "top_k_requested": "int",
        "top_k_returned": "int",
        "filters": "list_str",
        "acl_filtered_count": "int",
        "score_min": "num",
        "score_max": "num",
        "score_mean": "num",
        "chunk_ids": "list_str",
        "source_types": "list_str",
    },
    "rerank": {
        "reranker_model": "str",
        "reranker_version": "str",
        "candidate_count": "int",
        "top_n_selected": "int",
        "selected_chunk_ids": "list_str",
        "changed_rank_positions": "int",
        "score_delta_mean": "num",
    },
    "context_assembly": {
        "system_prompt_version": "str",
        "policy_block_version": "str",
        "context_policy": "str",
        "token_budget": "int",
        "tokens_system": "int",
        "tokens_history": "int",
        "tokens_context": "int",
        "tokens_tools": "int",
        "tokens_user": "int",
        "included_chunk_ids": "list_str",
        "excluded_chunks": "list_obj",
        "truncated": "bool",
        "citation_map_ids": "list_str",
    },
    "model_routing": {
        "route_policy_version": "str",
        "candidate_models": "list_str",
        "selected_model": "str",
        "reason": "str",
        "expected_cost_usd": "num",
        "max_tokens": "int",
        "temperature": "num",
        "fallback_chain": "list_str",
    },
    "llm": {
        "api_mode": "str",
        "pass_index": "int",
        "temperature": "num",
        "max_tokens": "int",
        "cached_tokens": "int",
        "reasoning_tokens": "int",
        "queue_ms": "num",
        "ttft_ms": "num",
        "generation_ms": "num",
        "finish_reason": "str",
        "tool_calls_proposed": "list_str",
        "parse_ok": "bool",
        "moderation_flagged": "bool",
        "retry_count": "int",
    },
    "tool_planning": {
        "planner_version": "str",
        "tools_available": "list_str",
        "tool_selected": "str",
        "rationale_category": "str",
        "confidence": "num",
    },
    "tool_call": {
        "tool_version": "str",
        "input_schema_version": "str",
        "args_redacted": "obj",
        "timeout_ms": "int",
        "retries": "int",
        "auth_context_type": "str",
        "result_bytes": "int",
        "error_category": "str",
        "dependency": "str",
    },
    "postprocess": {
        "validator_name": "str",
        "validator_version": "str",
        "passed": "bool",
        "confidence": "num",
        "filtered_categories": "list_str",
        "repair_attempts": "int",
        "fallback_triggered": "bool",
        "citations_total": "int",
        "citations_valid": "int",
    },
    "delivery": {
        "stream_started_ms": "num",
        "first_token_shown_ms": "num",
        "stream_completed": "bool",
        "client_render_error": "bool",
    },
}
# Keys of the objects inside context_assembly.excluded_chunks.
EXCLUDED_CHUNK_KEYS: Final = {"chunk_id": "str", "reason": "str"}

# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------

ARTIFACT_REF: Final = pa.struct(
    [
        pa.field("artifact_id", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("privacy_class", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
    ]
)


def _f(name: str, type_: pa.DataType, required: bool) -> pa.Field:
    # Every column is nullable in Parquet, so that a late producer can omit optional ones;
    # "required" lives in field metadata and is enforced by the validator.
    return pa.field(name, type_, nullable=True, metadata={b"required": b"1" if required else b"0"})


SPANS_SCHEMA: Final = pa.schema(
    [
        _f("schema_version", pa.string(), True),
        _f("event_time", TIMESTAMP, True),
        _f("end_time", TIMESTAMP, True),
        _f("duration_ms", pa.float64(), True),
        _f("ingest_time", TIMESTAMP, False),
        _f("trace_id", pa.string(), True),
        _f("span_id", pa.string(), True),
        _f("parent_span_id", pa.string(), False),
        _f("request_id", pa.string(), True),
        _f("conversation_id", pa.string(), False),
        _f("session_id", pa.string(), False),
        _f("user_id_hash", pa.string(), False),
        _f("tenant_id", pa.string(), True),
        _f("environment", pa.string(), True),
        _f("service_name", pa.string(), True),
        _f("app_version", pa.string(), True),
        _f("release_sha", pa.string(), True),
        _f("span_type", pa.string(), True),
        _f("operation_name", pa.string(), True),
        _f("status", pa.string(), True),
        _f("error_type", pa.string(), False),
        _f("error_message_redacted", pa.string(), False),
        _f("task_type", pa.string(), False),
        _f("route_name", pa.string(), False),
        _f("model_name", pa.string(), False),
        _f("model_provider", pa.string(), False),
        _f("prompt_version", pa.string(), False),
        _f("retriever_version", pa.string(), False),
        _f("tool_name", pa.string(), False),
        _f("cache_status", pa.string(), False),
        _f("input_tokens", pa.int64(), False),
        _f("output_tokens", pa.int64(), False),
        _f("cost_usd_estimate", pa.float64(), False),
        _f("experiment_ids", pa.list_(pa.string()), False),
        _f("privacy_tags", pa.list_(pa.string()), False),
        _f("artifact_refs", pa.list_(ARTIFACT_REF), False),
        _f("attributes", pa.string(), True),
    ]
)

FEEDBACK_SCHEMA: Final = pa.schema(
    [
        _f("schema_version", pa.string(), True),
        _f("feedback_id", pa.string(), True),
        _f("event_time", TIMESTAMP, True),
        _f("ingest_time", TIMESTAMP, False),
        _f("trace_id", pa.string(), True),
        _f("request_id", pa.string(), False),
        _f("conversation_id", pa.string(), False),
        _f("tenant_id", pa.string(), True),
        _f("user_id_hash", pa.string(), False),
        _f("feedback_type", pa.string(), True),
        _f("value", pa.float64(), False),
        _f("comment_redacted", pa.string(), False),
        _f("source", pa.string(), False),
    ]
)

ANNOTATIONS_SCHEMA: Final = pa.schema(
    [
        _f("schema_version", pa.string(), True),
        _f("annotation_id", pa.string(), True),
        _f("label_time", TIMESTAMP, True),
        _f("ingest_time", TIMESTAMP, False),
        _f("trace_id", pa.string(), True),
        _f("annotator_id_hash", pa.string(), False),
        _f("eval_dataset_id", pa.string(), False),
        _f("correctness", pa.float64(), False),
        _f("groundedness", pa.float64(), False),
        _f("citation_quality", pa.float64(), False),
        _f("completeness", pa.float64(), False),
        _f("tool_use_correct", pa.bool_(), False),
        _f("policy_compliant", pa.bool_(), False),
        _f("relevant_chunk_ids", pa.list_(pa.string()), False),
        _f("required_tools", pa.list_(pa.string()), False),
        _f("failure_category", pa.string(), False),
        # Additive optional columns of v1 (review workflow and eval runs, docs/review.md).
        _f("annotation_kind", pa.string(), False),
        _f("note_redacted", pa.string(), False),
        _f("eval_run_id", pa.string(), False),
        _f("candidate_versions", pa.list_(pa.string()), False),
        _f("retrieval_hit", pa.bool_(), False),
        _f("cost_usd", pa.float64(), False),
        _f("latency_ms", pa.float64(), False),
    ]
)


@dataclass(frozen=True)
class DatasetSpec:
    """What the lake and the validator need to know about one landed dataset."""

    name: str
    schema: pa.Schema
    id_column: str
    time_column: str  # the column whose UTC date is the `dt` partition
    enums: dict[str, tuple[str, ...]]
    unit_interval: tuple[str, ...] = ()  # double columns that must lie in [0, 1]

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Columns that must be present and non-null on every row."""
        return tuple(f.name for f in self.schema if f.metadata.get(b"required") == b"1")


SPANS: Final = DatasetSpec(
    name="spans",
    schema=SPANS_SCHEMA,
    id_column="span_id",
    time_column="event_time",
    enums={
        "span_type": SPAN_TYPES,
        "status": SPAN_STATUSES,
        "environment": ENVIRONMENTS,
        "cache_status": CACHE_STATUSES,
    },
)
FEEDBACK: Final = DatasetSpec(
    name="feedback",
    schema=FEEDBACK_SCHEMA,
    id_column="feedback_id",
    time_column="event_time",
    enums={"feedback_type": FEEDBACK_TYPES, "source": FEEDBACK_SOURCES},
)
ANNOTATIONS: Final = DatasetSpec(
    name="annotations",
    schema=ANNOTATIONS_SCHEMA,
    id_column="annotation_id",
    time_column="label_time",
    enums={"failure_category": FAILURE_CATEGORIES, "annotation_kind": ANNOTATION_KINDS},
    unit_interval=("correctness", "groundedness", "citation_quality", "completeness"),
)

DATASETS: Final[dict[str, DatasetSpec]] = {d.name: d for d in (SPANS, FEEDBACK, ANNOTATIONS)}

# Ids: W3C trace context, lowercase hex, not all zeros.
TRACE_ID_PATTERN: Final = r"^[0-9a-f]{32}$"
SPAN_ID_PATTERN: Final = r"^[0-9a-f]{16}$"

# --------------------------------------------------------------------------------------------
# Output contracts: metric series and change points
# --------------------------------------------------------------------------------------------

METRIC_SERIES_SCHEMA: Final = pa.schema(
    [
        pa.field("metric", pa.string()),
        pa.field("grain", pa.string()),
        pa.field("period_start", TIMESTAMP),
        pa.field("segment_key", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("n", pa.int64()),
    ]
)

CHANGE_POINTS_SCHEMA: Final = pa.schema(
    [
        pa.field("metric", pa.string()),
        pa.field("grain", pa.string()),
        pa.field("segment_key", pa.string()),
        pa.field("change_at", TIMESTAMP),
        pa.field("value_before", pa.float64()),
        pa.field("value_after", pa.float64()),
        pa.field("relative_change", pa.float64()),
        pa.field("direction", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("suspected_causes", pa.list_(pa.string())),
        pa.field("detected_by", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

METRICS: Final = (
    "request_count",
    "error_rate",
    "latency_p95_ms",
    "cost_per_request_usd",
    "task_success_rate",
    "cost_per_successful_task_usd",
    "thumbs_down_rate",
    "escalation_rate",
    "regenerate_rate",
    "tool_call_rate",
    "required_tool_missing_rate",
    "tool_error_rate",
    "tool_timeout_rate",
    "retrieval_hit_rate",
    "retrieval_zero_result_rate",
    "retrieval_score_mean",
    "context_truncation_rate",
    "citation_mismatch_rate",
    "guardrail_block_rate",
    "model_share",
)
GRAINS: Final = ("day", "hour")


def segment_key(**dims: str) -> str:
    """The segment key: ``all``, or ``dim=value`` pairs sorted by dim and joined by ``|``."""
    if not dims:
        return "all"
    return "|".join(f"{k}={dims[k]}" for k in sorted(dims))
