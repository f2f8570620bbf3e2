"""Decoded OTLP spans to contract ``spans`` rows, with redaction applied before anything lands.

Both instrumentation conventions are read: OpenTelemetry GenAI (``gen_ai.*``) and Arize
OpenInference (``openinference.span.kind``, ``llm.*``, ``retrieval.documents.N.document.*``,
``reranker.*``, ``tool.*``). Contract fields that no convention covers come from attributes
named ``tracehouse.<column>`` (span first, then resource), or ``tracehouse.<attribute key>``
for the span type's extension keys, else from :class:`MappingDefaults`. The request envelope is
carried from a span's nearest ancestor in the same batch. ``docs/otlp.md`` has the table.

The work is split at its seams: :mod:`tracehouse.otlp.conventions` (what the conventions' names
mean), :mod:`tracehouse.otlp.coerce` (attribute values to contract types),
:mod:`tracehouse.otlp.span_types` (the ``attributes`` JSON per span type), and here: the span's
classification, outcome, usage, tier-3 content, envelope, and the batch's carrying.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa

from tracehouse.contract.schemas import (
    CACHE_STATUSES,
    SCHEMA_VERSION,
    SPAN_ID_PATTERN,
    SPAN_STATUSES,
    SPAN_TYPES,
    SPANS_SCHEMA,
    TRACE_ID_PATTERN,
)
from tracehouse.otlp.coerce import INT64_MAX, as_bool, as_float, as_int, first, str_list
from tracehouse.otlp.conventions import (
    CARRIED,
    CONTENT_KEYS,
    CONTENT_PREFIXES,
    ENVIRONMENT_SYNONYMS,
    ERROR_CATEGORIES,
    FINISH_REASON_SYNONYMS,
    GENAI_OPERATIONS,
    OPENINFERENCE_KINDS,
    TH,
    SpanView,
    error_category,
    is_content,
)
from tracehouse.otlp.decode import RawSpan
from tracehouse.otlp.span_types import SpanFacts, type_attributes
from tracehouse.redaction import ArtifactStore, Redactor

__all__ = [
    "CARRIED", "CONTENT_KEYS", "CONTENT_PREFIXES", "ENVIRONMENT_SYNONYMS", "ERROR_CATEGORIES",
    "FINISH_REASON_SYNONYMS", "GENAI_OPERATIONS", "OPENINFERENCE_KINDS", "QUERY_PREVIEW_ENV",
    "TH", "MappingDefaults", "SpanMapper", "error_category", "spans_to_table",
]

QUERY_PREVIEW_ENV: Final = "TRACEHOUSE_QUERY_PREVIEW"
_TRACE_ID = re.compile(TRACE_ID_PATTERN)
_SPAN_ID = re.compile(SPAN_ID_PATTERN)


def _query_preview_from_env() -> bool:
    return os.environ.get(QUERY_PREVIEW_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class MappingDefaults:
    """Values of required contract columns when neither a convention nor ``tracehouse.*`` says.

    ``query_preview``: let the root's tier-3 ``input.value`` / ``gen_ai.retrieval.query.text``
    give a masked 256-char ``user_query_redacted`` (default off, as tier 3 never lands inline;
    ``TRACEHOUSE_QUERY_PREVIEW=1`` turns it on).
    """

    tenant_id: str = "unknown"
    environment: str = "dev"
    service_name: str = "unknown_service"
    app_version: str = "unknown"
    release_sha: str = "unknown"
    span_type: str = "request"  # non-root spans of no known kind (HTTP, DB, CHAIN, ...)
    query_preview: bool = field(default_factory=_query_preview_from_env)


def _micros(unix_nano: int) -> int | None:
    """Microseconds of a positive OTLP time that a timestamp can hold; else None (the row is
    then quarantined for its missing time, never a crash)."""
    if unix_nano <= 0 or unix_nano // 1000 > INT64_MAX:
        return None
    return unix_nano // 1000


@dataclass
class _Outcome:
    """How the span ended: status, error category and the text that explains it."""

    status: str
    error_category: str | None
    message: Any  # status message or exception message, unredacted
    stacktrace: Any  # the exception event's stack trace (tier 3), if any


@dataclass
class _Usage:
    """Model, provider, tool and token counts of the span (unredacted names)."""

    model: Any
    provider: Any
    tool_name: Any
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None


class SpanMapper:
    """Maps decoded spans to a contract ``spans`` table, redacting on the way."""

    def __init__(
        self,
        redactor: Redactor,
        *,
        defaults: MappingDefaults | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.redactor = redactor
        self.defaults = defaults or MappingDefaults()
        self.artifacts = artifacts

    # ---- classification ----------------------------------------------------------------

    def span_type(self, s: SpanView, is_root: bool) -> str:
        """The contract span type: ``tracehouse.span_type``, then the conventions."""
        explicit = s.th("span_type")
        if explicit in SPAN_TYPES:
            return str(explicit)
        kind = s.a.get("openinference.span.kind")
        if isinstance(kind, str) and kind.upper() in OPENINFERENCE_KINDS:
            return OPENINFERENCE_KINDS[kind.upper()]
        op = s.a.get("gen_ai.operation.name")
        if isinstance(op, str) and op in GENAI_OPERATIONS:
            return GENAI_OPERATIONS[op]
        if is_root:
            return "request"
        if s.get("gen_ai.tool.name", "tool.name") is not None:
            return "tool_call"
        if s.get("gen_ai.request.model", "llm.model_name") is not None:
            return "llm"
        return self.defaults.span_type

    def status(self, s: SpanView, span_type: str, error_raw: str | None) -> str:
        """ok / error / timeout / blocked from ``tracehouse.status``, OTel status, error.type."""
        explicit = s.th("status")
        if explicit in SPAN_STATUSES:
            return str(explicit)
        if as_bool(s.th("blocked")):
            return "blocked"
        low = (error_raw or "").lower()
        failed = s.raw.status_code == 2 or s.a.get("error.type") is not None
        if not failed:
            return "ok"
        if any(n in low for n in ("content_filter", "guardrail", "blocked")) and span_type in (
            "postprocess", "llm", "request"
        ):
            return "blocked"
        msg = s.raw.status_message.lower()
        if "timeout" in low or "timed out" in low or "timeout" in msg or "timed out" in msg:
            return "timeout"
        return "error"

    def _outcome(self, s: SpanView, span_type: str, tags: set[str]) -> _Outcome:
        """Status and error category; the error text is masked before it is categorised."""
        exc = next((e.attributes for e in s.raw.events if e.name == "exception"), {})
        error_raw = first(s.th("error_type"), s.a.get("error.type"), exc.get("exception.type"))
        status = self.status(s, span_type, error_raw)
        category = None
        if error_raw is not None:
            category = error_category(self.redactor.metadata(str(error_raw), tags))
        if category is None and status in ("timeout", "blocked"):
            category = status
        elif category is None and status == "error":
            category = "error"
        message = first(s.raw.status_message, exc.get("exception.message"))
        return _Outcome(status, category, message, exc.get("exception.stacktrace"))

    def _usage(self, s: SpanView, span_type: str) -> _Usage:
        """Model, provider, tool name, tokens and cost, by precedence."""
        model = first(s.th("model_name"), s.get("gen_ai.response.model", "gen_ai.request.model",
                                                "llm.model_name", "embedding.model_name",
                                                "reranker.model_name"))
        provider = first(s.th("model_provider"),
                         s.get("gen_ai.provider.name", "gen_ai.system", "llm.provider",
                               "llm.system"))
        tool_name = first(s.th("tool_name"), s.get("gen_ai.tool.name", "tool.name"))
        if tool_name is None and span_type == "tool_call":
            tool_name = s.a.get("tool_call.function.name")
        # Token counts: cache and reasoning tokens are already inside these (never added).
        in_tokens = out_tokens = None
        if span_type in ("llm", "embedding"):
            in_tokens = as_int(s.get("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                                     "llm.token_count.prompt"))
            out_tokens = as_int(s.get("gen_ai.usage.output_tokens",
                                      "gen_ai.usage.completion_tokens",
                                      "llm.token_count.completion"))
        in_tokens = first(as_int(s.th("input_tokens")), in_tokens)
        out_tokens = first(as_int(s.th("output_tokens")), out_tokens)
        cost = as_float(s.th("cost_usd_estimate"))
        if cost is None and span_type == "llm":
            cost = as_float(s.get("llm.cost.total"))
        return _Usage(model, provider, tool_name, in_tokens, out_tokens, cost)

    def _content(self, s: SpanView, stacktrace: Any, tags: set[str]) -> list[dict] | None:
        """Tier 3: content never lands inline; stored as an artifact or withheld."""
        content = {k: v for k, v in s.a.items() if is_content(k)}
        if stacktrace is not None:
            content["exception.stacktrace"] = stacktrace
        if not content:
            return None
        if self.artifacts is not None:
            tags.add("content_artifact")
            return [self.artifacts.put("span_content", content)]
        tags.add("content_withheld")
        return None

    def _environment(self, s: SpanView, tags: set[str]) -> str | None:
        env_raw = first(s.th("environment"), s.th_res("environment"),
                        s.r.get("deployment.environment.name"), s.r.get("deployment.environment"))
        if env_raw is None:
            return self.defaults.environment
        return ENVIRONMENT_SYNONYMS.get(str(env_raw).strip().lower(),
                                        self.redactor.metadata(env_raw, tags))

    def _envelope(self, s: SpanView, tags: set[str]) -> dict[str, Any]:
        """The span's own values of the carried columns (None where it has none)."""
        red = self.redactor
        own: dict[str, Any] = {
            "request_id": red.safe_identifier(s.th("request_id"), tags),
            "conversation_id": red.safe_identifier(
                first(s.th("conversation_id"), s.a.get("gen_ai.conversation.id")), tags),
            "session_id": red.safe_identifier(first(s.th("session_id"), s.a.get("session.id")),
                                              tags),
            "tenant_id": red.metadata(s.th("tenant_id"), tags),
            "task_type": red.metadata(s.th("task_type"), tags),
            "route_name": red.metadata(s.th("route_name"), tags),
            "prompt_version": red.metadata(
                first(s.th("prompt_version"), s.a.get("llm.prompt_template.version")), tags),
            "retriever_version": red.metadata(s.th("retriever_version"), tags),
            "release_sha": red.metadata(s.th("release_sha"), tags),
            "experiment_ids": str_list(s.th("experiment_ids"), lambda x: red.metadata(x, tags)),
        }
        user_hash = s.th("user_id_hash")
        user_raw = first(s.th("user_id"), s.a.get("user.id"), s.a.get("enduser.id"))
        if user_hash is not None:
            own["user_id_hash"] = red.id_hash_column(user_hash)
        elif user_raw is not None:
            own["user_id_hash"] = red.hash_id(str(user_raw))
        if own.get("user_id_hash"):
            tags.add("ids_hashed")
        return own

    def _resource_envelope(self, s: SpanView, tags: set[str]) -> dict[str, Any]:
        """Carried columns from the resource's ``tracehouse.*`` (and its VCS revision)."""
        red = self.redactor
        return {
            "tenant_id": red.metadata(s.th_res("tenant_id"), tags),
            "task_type": red.metadata(s.th_res("task_type"), tags),
            "route_name": red.metadata(s.th_res("route_name"), tags),
            "prompt_version": red.metadata(s.th_res("prompt_version"), tags),
            "retriever_version": red.metadata(s.th_res("retriever_version"), tags),
            "release_sha": red.metadata(
                first(s.th_res("release_sha"), s.r.get("vcs.ref.head.revision"),
                      s.r.get("vcs.repository.ref.revision"), s.r.get("git.commit.sha")),
                tags,
            ),
        }

    # ---- the whole span ----------------------------------------------------------------

    def map_span(self, raw: RawSpan, is_root: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(row without carried columns resolved, the span's own carried values)."""
        s = SpanView(raw)
        red = self.redactor
        tags: set[str] = set()
        span_type = self.span_type(s, is_root)
        outcome = self._outcome(s, span_type, tags)
        usage = self._usage(s, span_type)
        model = red.metadata(usage.model, tags)
        facts = SpanFacts(span_type, is_root, outcome.status, outcome.error_category, model,
                          usage.tool_name, usage.input_tokens, self.defaults.query_preview)
        attributes = type_attributes(s, facts, tags, red)
        artifact_refs = self._content(s, outcome.stacktrace, tags)
        failed = outcome.status != "ok"
        start_ns, end_ns = raw.start_time_unix_nano, raw.end_time_unix_nano
        cache_status = s.th("cache_status")
        d = self.defaults
        row: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event_time": _micros(start_ns),
            "end_time": _micros(end_ns),
            "duration_ms": (end_ns - start_ns) / 1e6 if _micros(start_ns) and _micros(end_ns)
            else None,
            "ingest_time": None,
            # ids that break the W3C format are quarantined: hashed first, never in clear
            "trace_id": red.checked_id(raw.trace_id, _TRACE_ID, tags),
            "span_id": red.checked_id(raw.span_id, _SPAN_ID, tags),
            "parent_span_id": red.checked_id(raw.parent_span_id, _SPAN_ID, tags),
            "environment": self._environment(s, tags),
            "service_name": red.metadata(
                first(s.th("service_name"), s.r.get("service.name"), d.service_name), tags),
            "app_version": red.metadata(
                first(s.th("app_version"), s.r.get("service.version"), d.app_version), tags),
            "span_type": span_type,
            "operation_name": red.metadata(first(s.th("operation_name"), raw.name, span_type),
                                           tags),
            "status": outcome.status,
            "error_type": red.metadata(outcome.error_category, tags) if failed else None,
            "error_message_redacted": red.free_text(outcome.message, tags) if failed else None,
            "model_name": model,
            "model_provider": red.metadata(usage.provider, tags),
            "tool_name": red.metadata(usage.tool_name, tags),
            "cache_status": cache_status if cache_status in CACHE_STATUSES else None,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd_estimate": usage.cost,
            "artifact_refs": artifact_refs,
            "attributes": json.dumps(attributes, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False),
        }
        own = self._envelope(s, tags)
        row["__resource"] = self._resource_envelope(s, tags)
        if "contains_user_text" not in tags:
            tags.add("tier1")
        row["privacy_tags"] = sorted(tags)
        return row, own

    def to_table(self, spans: Sequence[RawSpan]) -> pa.Table:
        """The contract ``spans`` table of ``spans`` (one row each, same order)."""
        ids = {(sp.trace_id, sp.span_id) for sp in spans}
        mapped = [self.map_span(sp, is_root=not sp.parent_span_id) for sp in spans]
        own_by_id = {(sp.trace_id, sp.span_id): own
                     for sp, (_, own) in zip(spans, mapped, strict=True)}
        parent_of = {(sp.trace_id, sp.span_id): sp.parent_span_id for sp in spans}
        d = self.defaults
        fallback = {"tenant_id": d.tenant_id, "release_sha": d.release_sha}

        rows = []
        for sp, (row, own) in zip(spans, mapped, strict=True):
            resource_level = row.pop("__resource")
            for col in CARRIED:
                value = own.get(col)
                key = (sp.trace_id, sp.span_id)
                seen = {key}
                while value is None:
                    parent = parent_of.get(key)
                    if not parent:
                        break
                    key = (sp.trace_id, parent)
                    if key not in ids or key in seen:
                        break
                    seen.add(key)
                    value = own_by_id[key].get(col)
                if value is None:
                    value = resource_level.get(col)
                if value is None and col == "request_id":
                    value = row["trace_id"]  # as checked: a malformed id is hashed
                if value is None:
                    value = fallback.get(col)
                row[col] = value
            rows.append(row)
        columns = {f.name: [r.get(f.name) for r in rows] for f in SPANS_SCHEMA}
        return pa.Table.from_pydict(columns, schema=SPANS_SCHEMA)



def spans_to_table(
    spans: Sequence[RawSpan],
    redactor: Redactor,
    *,
    defaults: MappingDefaults | None = None,
    artifacts: ArtifactStore | None = None,
) -> pa.Table:
    """Decoded spans to a contract ``spans`` table, redacted; the envelope carried in-batch."""
    return SpanMapper(redactor, defaults=defaults, artifacts=artifacts).to_table(spans)
