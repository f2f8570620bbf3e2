"""Redaction before write: PII and secret detection, masking, keyed hashing, allow-listing.

The article's tiers, as tracehouse applies them to every landing path:

- **Tier 1** (metadata: times, token counts, model names, versions, chunk ids, tool names) lands
  as it is, with the detectors run over it as a safety net.
- **Tier 2** (free text: query previews, error messages, tool arguments) lands only masked:
  e-mails, phone numbers, payment card numbers (Luhn-checked), IBANs (mod-97-checked), IP
  addresses, API keys, bearer tokens, JWTs, private keys and national ids become ``[EMAIL]``,
  ``[PHONE]``, ... Identifiers of people (user, account, annotator ids) become keyed hashes:
  HMAC-SHA256 with a key from ``TRACEHOUSE_HASH_KEY``, so one user joins across events but a
  hash cannot be reversed by guessing ids without the key. Tool arguments keep only allow-listed
  fields (masked); every other value is hashed.
- **Tier 3** (full prompts, outputs, retrieved texts, tool results) never lands inline: it is
  kept out, or written to an artifact store outside the lake and referenced.

``privacy_tags`` record what was done to a row (see :data:`PRIVACY_TAGS`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tracehouse.artifacts.store import ArtifactStore

log = logging.getLogger(__name__)

HASH_KEY_ENV: Final = "TRACEHOUSE_HASH_KEY"
TOOL_ARGS_ALLOWLIST_ENV: Final = "TRACEHOUSE_TOOL_ARGS_ALLOWLIST"
MIN_KEY_BYTES: Final = 16
PREVIEW_CHARS: Final = 256  # longest free-text preview that lands (tier 2)

# What a row's privacy_tags mean.
PRIVACY_TAGS: Final[dict[str, str]] = {
    "tier1": "the row carries metadata only: no free text landed",
    "contains_user_text": "the row carries masked free text (query preview, error message, args)",
    "pii_masked": "a detector found personal data (e-mail, phone, card, IBAN, IP, national id) "
    "and masked it",
    "secret_masked": "a detector found a credential (API key, bearer token, JWT, private key) "
    "and masked it",
    "ids_hashed": "user / account identifiers were replaced by keyed hashes",
    "args_allowlisted": "tool arguments were reduced to allow-listed fields, the rest hashed",
    "content_withheld": "full prompts, outputs or documents were present and not landed (tier 3)",
    "content_artifact": "tier-3 content was written to the artifact store and referenced",
    "truncated": "free text was cut to the preview length",
}

# Values of tool arguments kept (masked) by default; every other argument value is hashed.
DEFAULT_TOOL_ARGS_ALLOWLIST: Final = frozenset(
    {
        "date", "date_from", "date_to", "start_date", "end_date", "since", "until",
        "period", "month", "year", "limit", "top_k", "k", "n", "page", "page_size", "offset",
        "sort", "sort_by", "order", "currency", "locale", "language", "lang", "format", "unit",
        "units", "mode", "category", "status", "type", "kind", "region", "country", "timezone",
        "include_archived", "dry_run", "max_results", "fields", "operation", "action",
    }
)


class MissingHashKeyError(RuntimeError):
    """No usable hashing key: set TRACEHOUSE_HASH_KEY (or allow an ephemeral key for dev)."""


# --------------------------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """True when ``digits`` (digits only) passes the Luhn checksum of payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """True when ``candidate`` (spaces allowed) is an IBAN with a valid mod-97 check."""
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _dni_ok(candidate: str) -> bool:
    s = candidate.upper()
    prefix = {"X": "0", "Y": "1", "Z": "2"}.get(s[0], s[0])
    digits = prefix + s[1:-1]
    return digits.isdigit() and _DNI_LETTERS[int(digits) % 23] == s[-1]


def _ip_ok(candidate: str) -> bool:
    try:
        addr = ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return not (addr.version == 6 and candidate.count(":") < 3 and "::" not in candidate[1:-1])


@dataclass(frozen=True)
class Detector:
    """One class of sensitive text: a pattern, an optional check, the mask and its tag."""

    name: str
    pattern: re.Pattern[str]
    mask: str
    tag: str  # pii_masked or secret_masked
    check: Any = None  # callable(str) -> bool on the matched text (group "v" if present)
    group: str | int = 0


_SECRET = "secret_masked"
_PII = "pii_masked"

# Order matters: credentials first (they contain digits and dots that look like other things),
# then structured numbers with checksums, then the looser patterns.
DETECTORS: Final[tuple[Detector, ...]] = (
    Detector(
        "private_key",
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
                   re.S),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "bearer",
        re.compile(r"(?i)\b(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{12,}"),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "api_key",
        re.compile(
            r"\b(?:"
            r"sk-(?:proj-|ant-|live-|test-)?[A-Za-z0-9_-]{16,}"  # OpenAI, Anthropic
            r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
            r"|(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}"  # AWS access key ids
            r"|AIza[0-9A-Za-z_-]{35}"  # Google
            r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,}"  # GitHub
            r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack
            r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
            r"|hf_[A-Za-z0-9]{30,}"  # Hugging Face
            r")"
        ),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "labelled_secret",
        re.compile(
            r"(?i)\b(?:api[_-]?key|apikey|secret|client[_-]?secret|access[_-]?token|"
            r"auth[_-]?token|password|passwd|pwd|aws_secret_access_key)\b"
            r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<v>[^\s\"',;]{6,})"
        ),
        "[SECRET]", _SECRET, group="v",
    ),
    Detector(
        "email",
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
        "[EMAIL]", _PII,
    ),
    Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"),
        "[IBAN]", _PII, check=iban_ok,
    ),
    Detector(
        "card",
        re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])"),
        "[CARD]", _PII, check=lambda s: luhn_ok(re.sub(r"\D", "", s)),
    ),
    Detector(
        "ssn",
        re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])"),
        "[NATIONAL_ID]", _PII,
    ),
    Detector(
        "uk_nino",
        re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                   r" ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"),
        "[NATIONAL_ID]", _PII,
    ),
    Detector(
        "es_dni",
        re.compile(r"\b[XYZ0-9]\d{7}[A-Z]\b"),
        "[NATIONAL_ID]", _PII, check=_dni_ok,
    ),
    Detector(
        "ipv4",
        re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                   r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"),
        "[IP]", _PII,
    ),
    Detector(
        "ipv6",
        re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        "[IP]", _PII, check=_ip_ok,
    ),
    Detector(
        "phone",
        re.compile(
            r"(?<![\w+])(?<!\d[ .-])(?:"
            # +44 20 7946 0958
            r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
            r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}"  # (415) 555-0123
            r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0123
            r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"  # 020 7946 0958, 030-1234567
            r")(?![\w])(?![ .-]\d)"
        ),
        "[PHONE]", _PII,
        check=lambda s: 8 <= len(re.sub(r"\D", "", s)) <= 15,
    ),
)


@dataclass
class MaskResult:
    """Masked text and the tags of what was found in it."""

    text: str
    tags: set[str] = field(default_factory=set)
    found: dict[str, int] = field(default_factory=dict)


def mask_text(text: str) -> MaskResult:
    """Mask every detected PII or secret span in ``text``; return the text and tags found."""
    result = MaskResult(text)
    if not text:
        return result
    for det in DETECTORS:

        def repl(m: re.Match[str], det: Detector = det) -> str:
            value = m.group(det.group)
            if det.check is not None and not det.check(value):
                return m.group(0)
            result.tags.add(det.tag)
            result.found[det.name] = result.found.get(det.name, 0) + 1
            if det.group == 0:
                return det.mask
            start, end = m.span(det.group)
            whole = m.group(0)
            off = m.start(0)
            return whole[: start - off] + det.mask + whole[end - off :]

        result.text = det.pattern.sub(repl, result.text)
    return result


def contains_sensitive(text: str) -> bool:
    """True when any detector fires on ``text``."""
    return bool(mask_text(text).tags)


# --------------------------------------------------------------------------------------------
# Keyed hashing and the redactor
# --------------------------------------------------------------------------------------------

_HASH_LIKE = re.compile(r"^[0-9a-f]{32,128}$")


def looks_hashed(value: str) -> bool:
    """True for a value that is already a hex digest (32-128 lowercase hex chars)."""
    return bool(_HASH_LIKE.match(value))


def _load_allowlist(env: Mapping[str, str]) -> frozenset[str]:
    extra = env.get(TOOL_ARGS_ALLOWLIST_ENV, "")
    return DEFAULT_TOOL_ARGS_ALLOWLIST | {x.strip() for x in extra.split(",") if x.strip()}


class Redactor:
    """Applies the redaction tiers with one hashing key and one tool-argument allow-list."""

    def __init__(
        self,
        key: bytes,
        *,
        tool_args_allowlist: Iterable[str] = DEFAULT_TOOL_ARGS_ALLOWLIST,
        preview_chars: int = PREVIEW_CHARS,
        ephemeral: bool = False,
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise MissingHashKeyError(
                f"the hashing key must be at least {MIN_KEY_BYTES} bytes; got {len(key)}"
            )
        self._key = key
        self.tool_args_allowlist = frozenset(tool_args_allowlist)
        self.preview_chars = preview_chars
        self.ephemeral = ephemeral

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, allow_ephemeral: bool = False
    ) -> Redactor:
        """A redactor keyed by ``TRACEHOUSE_HASH_KEY``.

        Without the variable this raises :class:`MissingHashKeyError`, unless
        ``allow_ephemeral`` is set: then a random key is used for this process only, with a
        loud warning (hashes will not join with those of any other run).
        """
        env = os.environ if env is None else env
        raw = env.get(HASH_KEY_ENV, "")
        allowlist = _load_allowlist(env)
        if raw:
            return cls(raw.encode("utf-8"), tool_args_allowlist=allowlist)
        if not allow_ephemeral:
            raise MissingHashKeyError(
                f"{HASH_KEY_ENV} is not set. tracehouse hashes user and account ids with "
                f"HMAC-SHA256 and needs a stable secret key (>= {MIN_KEY_BYTES} bytes), e.g. "
                f"`export {HASH_KEY_ENV}="
                "$(python -c 'import secrets; print(secrets.token_hex(32))')`."
                " For a throw-away dev run, allow an ephemeral key instead."
            )
        log.warning(
            "%s is not set: using an EPHEMERAL hashing key. user_id_hash values of this run "
            "will not join with any other run. Never run production like this.",
            HASH_KEY_ENV,
        )
        return cls(secrets.token_bytes(32), tool_args_allowlist=allowlist, ephemeral=True)

    # ---- identifiers -------------------------------------------------------------------

    def hash_id(self, value: str) -> str:
        """HMAC-SHA256 of an identifier, as 64 lowercase hex chars."""
        return hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()

    def id_hash_column(self, value: Any) -> str | None:
        """A value for a ``*_hash`` column: kept if it already is a digest, else hashed."""
        if value is None or value == "":
            return None
        text = str(value)
        return text if looks_hashed(text) else self.hash_id(text)

    def safe_identifier(self, value: Any, tags: set[str]) -> str | None:
        """An application id (request, conversation, session, chunk): hashed if it holds PII."""
        if value is None:
            return None
        text = str(value)
        if contains_sensitive(text):
            tags.add("ids_hashed")
            return self.hash_id(text)
        return text

    # ---- free text ---------------------------------------------------------------------

    def metadata(self, value: Any, tags: set[str]) -> str | None:
        """A tier-1 string (model name, version, operation): masked as a safety net."""
        if value is None:
            return None
        m = mask_text(str(value))
        tags |= m.tags
        return m.text

    def free_text(self, value: Any, tags: set[str], *, limit: int | None = None) -> str | None:
        """A tier-2 preview: masked, cut to ``limit`` (default: the preview length)."""
        if value is None:
            return None
        text = str(value)
        if not text:
            return None
        limit = self.preview_chars if limit is None else limit
        m = mask_text(text)
        tags |= m.tags
        tags.add("contains_user_text")
        out = m.text
        if len(out) > limit:
            out = out[: limit - 1] + "…"
            tags.add("truncated")
        return out

    # ---- structured payloads -----------------------------------------------------------

    def tool_args(self, args: Any, tags: set[str], *, tool_name: str | None = None) -> Any:
        """Tool call arguments reduced to allow-listed fields (masked); other values hashed.

        A field is allowed by its name (``date_from``) or by ``<tool>.<name>``. Nested objects
        are walked; lists under an allowed name are kept element-wise masked.
        """
        tags.add("args_allowlisted")

        def allowed(key: str) -> bool:
            return key in self.tool_args_allowlist or (
                tool_name is not None and f"{tool_name}.{key}" in self.tool_args_allowlist
            )

        def keep(value: Any) -> Any:
            if isinstance(value, str):
                m = mask_text(value)
                tags.update(m.tags)
                tags.add("contains_user_text")
                return m.text
            if isinstance(value, list):
                return [keep(v) for v in value]
            if isinstance(value, dict):
                return walk(value)
            return value

        def hashed(value: Any) -> str:
            canon = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
            tags.add("ids_hashed")
            return "hmac:" + self.hash_id(canon)[:32]

        def walk(obj: dict[str, Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in obj.items():
                key = str(k)
                if isinstance(v, dict):
                    out[key] = walk(v)
                elif allowed(key):
                    out[key] = keep(v)
                else:
                    out[key] = hashed(v)
            return out

        if isinstance(args, dict):
            return walk(args)
        return {"_value": hashed(args)}


# --------------------------------------------------------------------------------------------
# Tier 3: the artifact store (encrypted, per-tenant keys) lives in tracehouse.artifacts;
# ArtifactStore is re-exported here for the landing paths that import it from this module.
# --------------------------------------------------------------------------------------------

__all__ = ["ArtifactStore"]
