"""What the conventions say: OpenTelemetry GenAI and OpenInference names, as lookup tables.

Span kinds and operations to contract span types, environment and finish-reason synonyms, error
categories, which attributes are tier-3 content, and readers of flattened OpenInference lists.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from tracehouse.otlp.decode import RawSpan

TH: Final = "tracehouse."

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




def snake(name: str) -> str:
    """The last dotted part of ``name`` in snake case, at most 64 chars."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.rsplit(".", 1)[-1])
    return re.sub(r"[^a-z0-9_]+", "_", s.lower()).strip("_")[:64]


def error_category(raw: str | None) -> str | None:
    """An enum-like error category from an ``error.type`` / exception type / message.

    Pass text that is already masked: the snake-cased fallback would otherwise hide an e-mail
    or a phone number from the detectors (``alice@example.com`` -> ``alice_example_com``).
    """
    if not raw:
        return None
    low = raw.lower()
    for category, needles in ERROR_CATEGORIES:
        if any(n in low for n in needles):
            return category
    return snake(raw) or None


def indexed(attrs: dict[str, Any], prefix: str, suffix: str) -> list[Any]:
    """Values of flattened OpenInference lists: ``<prefix>.<N>.<suffix>`` ordered by N."""
    found: list[tuple[int, Any]] = []
    p, s = prefix + ".", "." + suffix
    for k, v in attrs.items():
        if k.startswith(p) and k.endswith(s):
            mid = k[len(p) : len(k) - len(s)]
            if mid.isdigit():
                found.append((int(mid), v))
    return [v for _, v in sorted(found, key=lambda t: t[0])]


def is_content(key: str) -> bool:
    """True for a tier-3 attribute (prompts, outputs, documents): never landed inline."""
    if key in CONTENT_KEYS:
        return True
    return key.startswith(CONTENT_PREFIXES) and not key.endswith(_METADATA_SUFFIXES)


_TOOL_CALL_NAME = re.compile(
    r"llm\.output_messages\.(\d+)\.message\.tool_calls\.(\d+)\.tool_call\.function\.name"
)


def indexed_tool_calls(attrs: dict[str, Any]) -> list[str]:
    """Tool names proposed in OpenInference output messages, in message / call order."""
    found = []
    for k, v in attrs.items():
        m = _TOOL_CALL_NAME.fullmatch(k)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), str(v)))
    return [name for _, _, name in sorted(found)]


def genai_tool_calls(messages: Any) -> list[str]:
    """Tool names proposed in GenAI ``gen_ai.output.messages`` (parts of type tool_call)."""
    if isinstance(messages, str):
        try:
            parsed = json.loads(messages)
        except (json.JSONDecodeError, RecursionError):
            return []
    else:
        parsed = messages
    names: list[str] = []
    if isinstance(parsed, list):
        for msg in parsed:
            for part in (msg.get("parts") or []) if isinstance(msg, dict) else []:
                if isinstance(part, dict) and part.get("type") == "tool_call" and part.get("name"):
                    names.append(str(part["name"]))
    return names


class SpanView:
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
        """The first of ``keys`` that the span has a value for."""
        for k in keys:
            v = self.a.get(k)
            if v is not None and v not in ("", []):
                return v
        return None
