"""Decoded OTLP spans to contract ``spans`` rows, with redaction applied before anything lands.

Both instrumentation conventions are read: OpenTelemetry GenAI (``gen_ai.*``) and Arize
OpenInference (``openinference.span.kind``, ``llm.*``, ``retrieval.documents.N.document.*``,
``reranker.*``, ``tool.*``). Contract fields that no convention covers come from attributes
named ``tracehouse.<column>`` (span first, then resource), or ``tracehouse.<attribute key>``
for the span type's extension keys, else from :class:`MappingDefaults`. The request envelope is
carried from a span's nearest ancestor in the same batch. ``docs/otlp.md`` has the table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pyarrow as pa

from tracehouse.contract.schemas import (
    ATTRIBUTE_KEYS,
    CACHE_STATUSES,
    SCHEMA_VERSION,
    SPAN_STATUSES,
    SPAN_TYPES,
    SPANS_SCHEMA,
    VALIDATOR_NAMES,
)
from tracehouse.otlp.decode import RawSpan
from tracehouse.redaction import ArtifactStore, Redactor

TH: Final = "tracehouse."


@dataclass(frozen=True)
class MappingDefaults:
    """Values of required contract columns when neither a convention nor ``tracehouse.*`` says."""

    tenant_id: str = "unknown"
    environment: str = "dev"
    service_name: str = "unknown_service"
    app_version: str = "unknown"
    release_sha: str = "unknown"
    span_type: str = "request"  # non-root spans of no known kind (HTTP, DB, CHAIN, ...)


# Span type from the conventions.
OPENINFERENCE_KINDS: Final[dict[str, str]] = {
    "LLM": "llm",
    "EMBEDDING": "embedding",
    "RETRIEVER": "retrieval",
    "RERANKER": "rerank",
    "TOOL": "tool_call",
    "GUARDRAIL": "postprocess",
    "EVALUATOR": "postprocess",
    "PROMPT": "context_assembly",
    "AGENT": "request",
    "CHAIN": "request",
}
GENAI_OPERATIONS: Final[dict[str, str]] = {
    "chat": "llm",
    "generate_content": "llm",
    "text_completion": "llm",
    "embeddings": "embedding",
    "retrieval": "retrieval",
    "execute_tool": "tool_call",
    "create_agent": "request",
    "invoke_agent": "request",
    "invoke_workflow": "request",
}
ENVIRONMENT_SYNONYMS: Final[dict[str, str]] = {
    **dict.fromkeys(("prod", "production", "prd", "live"), "prod"),
    **dict.fromkeys(("staging", "stage", "stg", "preprod", "pre-prod", "uat", "qa"), "staging"),
    **dict.fromkeys(("dev", "development", "local", "test", "testing", "sandbox", "ci"), "dev"),
}
FINISH_REASON_SYNONYMS: Final[dict[str, str]] = {
    **dict.fromkeys(("stop", "end_turn", "stop_sequence", "complete", "eos"), "stop"),
    **dict.fromkeys(("length", "max_tokens", "max_output_tokens"), "length"),
    **dict.fromkeys(("tool_calls", "tool_call", "tool_use", "function_call"), "tool_calls"),
    **dict.fromkeys(("content_filter", "safety", "blocked", "recitation"), "content_filter"),
    "error": "error",
}
# Columns describing the whole request: carried from the nearest ancestor in the batch.
CARRIED: Final = (
    "request_id", "conversation_id", "session_id", "user_id_hash", "tenant_id", "task_type",
    "route_name", "prompt_version", "retriever_version", "release_sha", "experiment_ids",
)
# Error categories, first match wins (matched against the lower-cased error.type / exception).
ERROR_CATEGORIES: Final = (
    ("timeout", ("timeout", "timed out", "timedout", "deadline")),
    ("rate_limit", ("ratelimit", "rate_limit", "rate limit", "429", "too many requests",
                    "quota")),
    ("blocked", ("content_filter", "contentfilter", "guardrail", "blocked")),
    ("auth", ("unauthorized", "forbidden", "permission", "authentication", "401", "403")),
    ("not_found", ("notfound", "not_found", "not found", "404")),
    ("invalid_args", ("invalid", "validation", "valueerror", "typeerror", "badrequest",
                      "bad_request", "400", "422", "schema")),
    ("dependency_down", ("connection", "unavailable", "dependency", "502", "503", "504",
                         "refused", "unreachable")),
)

# Tier-3 content: never lands inline.
CONTENT_KEYS: Final = frozenset(
    {
        "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
        "gen_ai.prompt", "gen_ai.completion", "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result", "gen_ai.retrieval.query.text", "input.value", "output.value",
        "llm.prompt_template.template", "llm.prompt_template.variables", "reranker.query",
        "tool_call.function.arguments", "embedding.text",
    }
)
CONTENT_PREFIXES: Final = (
    "llm.input_messages.", "llm.output_messages.", "llm.prompts", "retrieval.documents.",
    "reranker.input_documents.", "reranker.output_documents.", "embedding.embeddings.",
    "gen_ai.prompt.", "gen_ai.completion.", "message.",
)
_METADATA_SUFFIXES: Final = (
    ".document.id", ".document.score", ".tool_call.function.name", ".message.role",
    ".embedding.vector", ".message.finish_reason",
)


# --------------------------------------------------------------------------------------------
# Small coercions
# --------------------------------------------------------------------------------------------


def _first(*values: Any) -> Any:
    for v in values:
        if v is not None and v not in ("", []):
            return v
    return None


def _as_int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def _as_float(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _as_bool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("false", "0", "no"):
        return False
    return None


def _as_json(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return None
    return v


def _as_list(v: Any) -> list[Any] | None:
    v = _as_json(v) if isinstance(v, str) and v.lstrip().startswith("[") else v
    if isinstance(v, list):
        return v
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return None if v is None else [v]


def _snake(name: str) -> str:
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.rsplit(".", 1)[-1])
    return re.sub(r"[^a-z0-9_]+", "_", s.lower()).strip("_")[:64]


def error_category(raw: str | None) -> str | None:
    """An enum-like error category from an ``error.type`` / exception type / message."""
    if not raw:
        return None
    low = raw.lower()
    for category, needles in ERROR_CATEGORIES:
        if any(n in low for n in needles):
            return category
    return _snake(raw) or None


def _indexed(attrs: dict[str, Any], prefix: str, suffix: str) -> list[Any]:
    """Values of flattened OpenInference lists: ``<prefix>.<N>.<suffix>`` ordered by N."""
    found: list[tuple[int, Any]] = []
    p, s = prefix + ".", "." + suffix
    for k, v in attrs.items():
        if k.startswith(p) and k.endswith(s):
            mid = k[len(p) : len(k) - len(s)]
            if mid.isdigit():
                found.append((int(mid), v))
    return [v for _, v in sorted(found, key=lambda t: t[0])]


def _is_content(key: str) -> bool:
    if key in CONTENT_KEYS:
        return True
    return key.startswith(CONTENT_PREFIXES) and not key.endswith(_METADATA_SUFFIXES)


# --------------------------------------------------------------------------------------------
# One span
# --------------------------------------------------------------------------------------------


class _Span:
    """Attribute lookups on one span: span level, resource level, ``tracehouse.*``."""

    def __init__(self, raw: RawSpan) -> None:
        self.raw = raw
        self.a = raw.attributes
        self.r = raw.resource

    def th(self, name: str) -> Any:
        """``tracehouse.<name>`` on the span only."""
        return self.a.get(TH + name)

    def th_res(self, name: str) -> Any:
        """``tracehouse.<name>`` on the resource only."""
        return self.r.get(TH + name)

    def get(self, *keys: str) -> Any:
        return _first(*(self.a.get(k) for k in keys))


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

    def span_type(self, s: _Span, is_root: bool) -> str:
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

    @staticmethod
    def _exception(s: _Span) -> tuple[str | None, str | None, bool]:
        for e in s.raw.events:
            if e.name == "exception":
                return (
                    e.attributes.get("exception.type"),
                    e.attributes.get("exception.message"),
                    "exception.stacktrace" in e.attributes,
                )
        return None, None, False

    def status(self, s: _Span, span_type: str, error_raw: str | None) -> str:
        """ok / error / timeout / blocked from ``tracehouse.status``, OTel status, error.type."""
        explicit = s.th("status")
        if explicit in SPAN_STATUSES:
            return str(explicit)
        if _as_bool(s.th("blocked")):
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

    # ---- per-type extension attributes -------------------------------------------------

    def _llm(self, s: _Span, out: dict[str, Any], tags: set[str]) -> None:
        inv = _as_json(s.a.get("llm.invocation_parameters"))
        inv = inv if isinstance(inv, dict) else {}
        op = s.a.get("gen_ai.operation.name")
        if op in ("chat", "text_completion", "generate_content"):
            out["api_mode"] = op
        out["temperature"] = _as_float(_first(s.a.get("gen_ai.request.temperature"),
                                              inv.get("temperature")))
        out["max_tokens"] = _as_int(_first(
            s.a.get("gen_ai.request.max_tokens"), inv.get("max_tokens"),
            inv.get("max_completion_tokens"), inv.get("max_output_tokens"),
        ))
        out["cached_tokens"] = _as_int(s.get("gen_ai.usage.cache_read.input_tokens",
                                             "llm.token_count.prompt_details.cache_read"))
        out["reasoning_tokens"] = _as_int(s.get("gen_ai.usage.reasoning.output_tokens",
                                                "llm.token_count.completion_details.reasoning"))
        reasons = _as_list(s.get("gen_ai.response.finish_reasons", "llm.finish_reason"))
        if not reasons:
            reasons = _indexed(s.a, "llm.output_messages", "message.finish_reason")
        if reasons:
            normalized = FINISH_REASON_SYNONYMS.get(str(reasons[0]).lower())
            out["finish_reason"] = normalized
            if normalized == "content_filter":
                out["moderation_flagged"] = True
        names = [n for n in _indexed_tool_calls(s.a) if n]
        if not names:
            names = _genai_tool_calls(s.a.get("gen_ai.output.messages"))
        if names:
            out["tool_calls_proposed"] = [self.redactor.metadata(n, tags) for n in names]

    def _retrieval(self, s: _Span, out: dict[str, Any], tags: set[str]) -> None:
        ids = _indexed(s.a, "retrieval.documents", "document.id")
        scores = _indexed(s.a, "retrieval.documents", "document.score")
        if not ids:
            docs = _as_json(s.a.get("gen_ai.retrieval.documents"))
            if isinstance(docs, list):
                ids = [d.get("id") for d in docs if isinstance(d, dict)]
                scores = [d.get("score") for d in docs if isinstance(d, dict)]
        nums = [f for f in (_as_float(x) for x in scores) if f is not None]
        if ids or "retrieval.documents.0.document.content" in s.a or nums:
            out["top_k_returned"] = len(ids)
        if ids:
            out["chunk_ids"] = [self.redactor.safe_identifier(i, tags) for i in ids
                                if i is not None]
        if nums:
            out["score_min"], out["score_max"] = min(nums), max(nums)
            out["score_mean"] = sum(nums) / len(nums)
        out["top_k_requested"] = _as_int(s.get("gen_ai.request.top_k"))

    def _rerank(self, s: _Span, out: dict[str, Any], tags: set[str]) -> None:
        in_ids = _indexed(s.a, "reranker.input_documents", "document.id")
        in_scores = _indexed(s.a, "reranker.input_documents", "document.score")
        out_ids = _indexed(s.a, "reranker.output_documents", "document.id")
        out_scores = _indexed(s.a, "reranker.output_documents", "document.score")
        out["reranker_model"] = self.redactor.metadata(s.get("reranker.model_name"), tags)
        if in_ids:
            out["candidate_count"] = len(in_ids)
        if out_ids:
            out["top_n_selected"] = len(out_ids)
            out["selected_chunk_ids"] = [self.redactor.safe_identifier(i, tags) for i in out_ids]
        else:
            out["top_n_selected"] = _as_int(s.get("reranker.top_k"))
        if in_ids and out_ids:
            pos = {d: i for i, d in enumerate(in_ids)}
            out["changed_rank_positions"] = sum(
                1 for i, d in enumerate(out_ids) if pos.get(d, -1) != i
            )
            before = dict(zip(in_ids, in_scores, strict=False))
            deltas = [
                a - b
                for d, sc in zip(out_ids, out_scores, strict=False)
                if (a := _as_float(sc)) is not None and (b := _as_float(before.get(d))) is not None
            ]
            if deltas:
                out["score_delta_mean"] = sum(deltas) / len(deltas)

    def _embedding(self, s: _Span, out: dict[str, Any], tags: set[str],
                   model: str | None, in_tokens: int | None) -> None:
        out["embedding_model"] = model
        out["dimension"] = _as_int(s.get("gen_ai.embeddings.dimension.count"))
        out["input_tokens"] = in_tokens

    def _tool_call(self, s: _Span, out: dict[str, Any], tags: set[str], *,
                   tool_name: str | None, status: str, error_cat: str | None) -> None:
        args = _first(s.th("args"), s.a.get("gen_ai.tool.call.arguments"),
                      s.a.get("tool_call.function.arguments"))
        if args is None and s.a.get("openinference.span.kind") == "TOOL":
            args = s.a.get("input.value")
        if args is not None:
            parsed = _as_json(args) if isinstance(args, str) else args
            out["args_redacted"] = self.redactor.tool_args(
                parsed if parsed is not None else args, tags, tool_name=tool_name
            )
        result = _first(s.a.get("gen_ai.tool.call.result"),
                        s.a.get("output.value") if s.a.get("openinference.span.kind") == "TOOL"
                        else None)
        if result is not None:
            text = result if isinstance(result, str) else json.dumps(result, default=str)
            out["result_bytes"] = len(text.encode("utf-8"))
        if status != "ok":
            out["error_category"] = error_cat

    def _postprocess(self, s: _Span, out: dict[str, Any], status: str) -> None:
        if s.raw.name in VALIDATOR_NAMES:
            out["validator_name"] = s.raw.name
        out["passed"] = status == "ok"

    def _request(self, s: _Span, out: dict[str, Any], tags: set[str], is_root: bool) -> None:
        query = s.th("user_query")
        if query is None and is_root:
            query = _first(s.a.get("gen_ai.retrieval.query.text"), s.a.get("input.value"))
        if query is not None:
            out["user_query_redacted"] = self.redactor.free_text(query, tags)

    def _tracehouse_keys(self, s: _Span, span_type: str, out: dict[str, Any],
                         tags: set[str]) -> None:
        """``tracehouse.<key>`` for every extension key of the span type, typed and redacted."""
        for key, kind in ATTRIBUTE_KEYS[span_type].items():
            raw = s.th(key)
            if raw is None:
                continue
            if key == "args_redacted":
                continue  # handled with the allow-list in _tool_call
            if key.endswith("_redacted"):
                value: Any = self.redactor.free_text(raw, tags)
            elif key.endswith("_hash"):
                value = self.redactor.id_hash_column(raw)
            else:
                value = _coerce(kind, raw, lambda x: self.redactor.metadata(x, tags))
            if value is not None:
                out[key] = value

    # ---- the whole span ----------------------------------------------------------------

    def map_span(self, raw: RawSpan, is_root: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """(row without carried columns resolved, the span's own carried values)."""
        s = _Span(raw)
        red = self.redactor
        tags: set[str] = set()
        row: dict[str, Any] = {}
        span_type = self.span_type(s, is_root)

        exc_type, exc_message, has_stack = self._exception(s)
        error_raw = _first(s.th("error_type"), s.a.get("error.type"), exc_type)
        status = self.status(s, span_type, error_raw)
        err_cat = error_category(str(error_raw)) if error_raw is not None else None
        if err_cat is None and status in ("timeout", "blocked"):
            err_cat = status
        elif err_cat is None and status == "error":
            err_cat = "error"

        model = _first(s.th("model_name"), s.get("gen_ai.response.model", "gen_ai.request.model",
                                                 "llm.model_name", "embedding.model_name",
                                                 "reranker.model_name"))
        provider = _first(s.th("model_provider"),
                          s.get("gen_ai.provider.name", "gen_ai.system", "llm.provider",
                                "llm.system"))
        tool_name = _first(s.th("tool_name"), s.get("gen_ai.tool.name", "tool.name"))
        if tool_name is None and span_type == "tool_call":
            tool_name = s.a.get("tool_call.function.name")

        # Token counts: cache and reasoning tokens are already inside these (never added).
        in_tokens = out_tokens = None
        if span_type in ("llm", "embedding"):
            in_tokens = _as_int(s.get("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                                      "llm.token_count.prompt"))
            out_tokens = _as_int(s.get("gen_ai.usage.output_tokens",
                                       "gen_ai.usage.completion_tokens",
                                       "llm.token_count.completion"))
        in_tokens = _first(_as_int(s.th("input_tokens")), in_tokens)
        out_tokens = _first(_as_int(s.th("output_tokens")), out_tokens)
        cost = _as_float(s.th("cost_usd_estimate"))
        if cost is None and span_type == "llm":
            cost = _as_float(s.get("llm.cost.total"))

        model_s = red.metadata(model, tags)
        attrs: dict[str, Any] = {}
        if span_type == "llm":
            self._llm(s, attrs, tags)
        elif span_type == "retrieval":
            self._retrieval(s, attrs, tags)
        elif span_type == "rerank":
            self._rerank(s, attrs, tags)
        elif span_type == "embedding":
            self._embedding(s, attrs, tags, model_s, in_tokens)
        elif span_type == "tool_call":
            self._tool_call(s, attrs, tags, tool_name=tool_name, status=status, error_cat=err_cat)
        elif span_type == "postprocess":
            self._postprocess(s, attrs, status)
        elif span_type == "request":
            self._request(s, attrs, tags, is_root)
        self._tracehouse_keys(s, span_type, attrs, tags)
        attributes = {k: v for k, v in attrs.items() if v is not None}

        # Tier 3: content never lands inline.
        content = {k: v for k, v in s.a.items() if _is_content(k)}
        if has_stack:
            content["exception.stacktrace"] = next(
                e.attributes["exception.stacktrace"] for e in raw.events
                if e.name == "exception" and "exception.stacktrace" in e.attributes
            )
        artifact_refs = None
        if content:
            if self.artifacts is not None:
                row["__content"] = content  # stored in to_table, once the tenant is known
                tags.add("content_artifact")
            else:
                tags.add("content_withheld")

        error_message = None
        if status != "ok":
            error_message = red.free_text(_first(raw.status_message, exc_message), tags)

        env_raw = _first(s.th("environment"), s.th_res("environment"),
                         s.r.get("deployment.environment.name"), s.r.get("deployment.environment"))
        environment = (
            ENVIRONMENT_SYNONYMS.get(str(env_raw).strip().lower(), red.metadata(env_raw, tags))
            if env_raw is not None else self.defaults.environment
        )
        cache_status = s.th("cache_status")
        start_ns, end_ns = raw.start_time_unix_nano, raw.end_time_unix_nano

        row.update(
            schema_version=SCHEMA_VERSION,
            event_time=start_ns // 1000 if start_ns > 0 else None,
            end_time=end_ns // 1000 if end_ns > 0 else None,
            duration_ms=(end_ns - start_ns) / 1e6 if start_ns > 0 and end_ns > 0 else None,
            ingest_time=None,
            trace_id=raw.trace_id,
            span_id=raw.span_id,
            parent_span_id=raw.parent_span_id,
            environment=environment,
            service_name=red.metadata(
                _first(s.th("service_name"), s.r.get("service.name"), self.defaults.service_name),
                tags,
            ),
            app_version=red.metadata(
                _first(s.th("app_version"), s.r.get("service.version"),
                       self.defaults.app_version), tags,
            ),
            span_type=span_type,
            operation_name=red.metadata(_first(s.th("operation_name"), raw.name, span_type),
                                        tags),
            status=status,
            error_type=red.metadata(err_cat, tags) if status != "ok" else None,
            error_message_redacted=error_message,
            model_name=model_s,
            model_provider=red.metadata(provider, tags),
            tool_name=red.metadata(tool_name, tags),
            cache_status=cache_status if cache_status in CACHE_STATUSES else None,
            input_tokens=in_tokens,
            output_tokens=out_tokens,
            cost_usd_estimate=cost,
            artifact_refs=artifact_refs,
            attributes=json.dumps(attributes, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False),
        )

        own: dict[str, Any] = {
            "request_id": red.safe_identifier(s.th("request_id"), tags),
            "conversation_id": red.safe_identifier(
                _first(s.th("conversation_id"), s.a.get("gen_ai.conversation.id")), tags),
            "session_id": red.safe_identifier(_first(s.th("session_id"), s.a.get("session.id")),
                                              tags),
            "tenant_id": red.metadata(s.th("tenant_id"), tags),
            "task_type": red.metadata(s.th("task_type"), tags),
            "route_name": red.metadata(s.th("route_name"), tags),
            "prompt_version": red.metadata(
                _first(s.th("prompt_version"), s.a.get("llm.prompt_template.version")), tags),
            "retriever_version": red.metadata(s.th("retriever_version"), tags),
            "release_sha": red.metadata(s.th("release_sha"), tags),
            "experiment_ids": _str_list(s.th("experiment_ids"), lambda x: red.metadata(x, tags)),
        }
        user_hash = s.th("user_id_hash")
        user_raw = _first(s.th("user_id"), s.a.get("user.id"), s.a.get("enduser.id"))
        if user_hash is not None:
            own["user_id_hash"] = red.id_hash_column(user_hash)
        elif user_raw is not None:
            own["user_id_hash"] = red.hash_id(str(user_raw))
        if own.get("user_id_hash"):
            tags.add("ids_hashed")
        resource_level: dict[str, Any] = {
            "tenant_id": red.metadata(s.th_res("tenant_id"), tags),
            "task_type": red.metadata(s.th_res("task_type"), tags),
            "route_name": red.metadata(s.th_res("route_name"), tags),
            "prompt_version": red.metadata(s.th_res("prompt_version"), tags),
            "retriever_version": red.metadata(s.th_res("retriever_version"), tags),
            "release_sha": red.metadata(
                _first(s.th_res("release_sha"), s.r.get("vcs.ref.head.revision"),
                       s.r.get("vcs.repository.ref.revision"), s.r.get("git.commit.sha")),
                tags,
            ),
        }
        if "contains_user_text" not in tags:
            tags.add("tier1")
        row["privacy_tags"] = sorted(tags)
        row["__resource"] = resource_level
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
                    value = sp.trace_id
                if value is None:
                    value = fallback.get(col)
                row[col] = value
            content = row.pop("__content", None)
            if content is not None and self.artifacts is not None:
                row["artifact_refs"] = self.artifacts.put_span_content(
                    content, tenant_id=row["tenant_id"])
            rows.append(row)
        columns = {f.name: [r.get(f.name) for r in rows] for f in SPANS_SCHEMA}
        return pa.Table.from_pydict(columns, schema=SPANS_SCHEMA)


def _str_list(value: Any, clean: Callable[[Any], Any]) -> list[str] | None:
    items = _as_list(value)
    if not items:
        return None
    return [clean(str(x)) for x in items]


def _coerce(kind: str, value: Any, clean: Callable[[Any], Any]) -> Any:
    """A ``tracehouse.<key>`` value in the attribute key's type, or None."""
    if kind == "str":
        return clean(value) if not isinstance(value, list | dict) else None
    if kind == "int":
        return _as_int(value)
    if kind == "num":
        return _as_float(value)
    if kind == "bool":
        return _as_bool(value)
    if kind == "list_str":
        return _str_list(value, clean)
    if kind == "list_num":
        items = _as_list(value)
        return [f for f in (_as_float(x) for x in items or []) if f is not None] or None
    if kind in ("obj", "list_obj"):
        parsed = _as_json(value)
        want = dict if kind == "obj" else list
        return _clean_json(parsed, clean) if isinstance(parsed, want) else None
    return None


def _clean_json(value: Any, clean: Callable[[Any], Any]) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [_clean_json(v, clean) for v in value]
    if isinstance(value, dict):
        return {str(k): _clean_json(v, clean) for k, v in value.items()}
    return value


def _indexed_tool_calls(attrs: dict[str, Any]) -> list[str]:
    """Tool names proposed in OpenInference output messages, in message / call order."""
    found = []
    for k, v in attrs.items():
        m = re.fullmatch(
            r"llm\.output_messages\.(\d+)\.message\.tool_calls\.(\d+)\.tool_call\.function\.name",
            k,
        )
        if m:
            found.append((int(m.group(1)), int(m.group(2)), str(v)))
    return [name for _, _, name in sorted(found)]


def _genai_tool_calls(messages: Any) -> list[str]:
    """Tool names proposed in GenAI ``gen_ai.output.messages`` (parts of type tool_call)."""
    parsed = _as_json(messages)
    names: list[str] = []
    if isinstance(parsed, list):
        for msg in parsed:
            for part in (msg.get("parts") or []) if isinstance(msg, dict) else []:
                if isinstance(part, dict) and part.get("type") == "tool_call" and part.get("name"):
                    names.append(str(part["name"]))
    return names


def spans_to_table(
    spans: Sequence[RawSpan],
    redactor: Redactor,
    *,
    defaults: MappingDefaults | None = None,
    artifacts: ArtifactStore | None = None,
) -> pa.Table:
    """Decoded spans to a contract ``spans`` table, redacted; the envelope carried in-batch."""
    return SpanMapper(redactor, defaults=defaults, artifacts=artifacts).to_table(spans)
