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
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tracehouse.artifacts.store import ArtifactStore
from tracehouse.errors import ConfigurationError

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


class MissingHashKeyError(ConfigurationError, RuntimeError):
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


# IBAN length per country (SWIFT IBAN registry); an unknown country tries 34 down to 15.
IBAN_LENGTHS: Final[dict[str, int]] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def _iban_prefix(candidate: str) -> int:
    """Length of the leading part of ``candidate`` that is a valid IBAN (spaces and dashes
    allowed between characters), or 0. The pattern may run into the next word ("... 32 and");
    the country's IBAN length says where the IBAN ends."""
    country = candidate[:2].upper()
    lengths = [IBAN_LENGTHS[country]] if country in IBAN_LENGTHS else range(34, 14, -1)
    positions = [i for i, ch in enumerate(candidate) if ch.isalnum()]
    for n in lengths:
        if n <= len(positions):
            chars = "".join(candidate[i] for i in positions[:n])
            if iban_ok(chars):
                return positions[n - 1] + 1
    return 0


def _ssn_ok(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return (area not in ("000", "666") and not area.startswith("9") and group != "00"
            and serial != "0000")


@dataclass(frozen=True)
class Detector:
    """One class of sensitive text: a pattern, an optional check, the mask and its tag.

    ``group`` names the part of the match that is masked (0: all of it; a tuple: the first of
    those groups that matched). ``check`` decides on the masked text; ``trim`` instead returns
    how much of it to mask (0: nothing), for patterns that may run past the value.
    """

    name: str
    pattern: re.Pattern[str]
    mask: str
    tag: str  # pii_masked or secret_masked
    check: Any = None  # callable(str) -> bool on the matched text (group "v" if present)
    group: str | int | tuple[str, ...] = 0
    trim: Any = None  # callable(str) -> int


_SECRET = "secret_masked"
_PII = "pii_masked"

# Every quantifier is bounded and every pattern starts at a boundary (a lookbehind), so a
# detector does at most a constant amount of work per character: no catastrophic backtracking
# on any input (tests/test_redaction_corpus.py feeds 64 KiB pathological strings).
# Combining marks (Devanagari, Thai, Hebrew and Arabic vowel signs, diacritics) are letters'
# parts in an internationalised address, though not ``\w`` to Python.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u0610-\u061a\u064b-\u065f"
    "\u0900-\u0dff\u0e00-\u0eff\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
)
_EMAIL_AT = r"(?:@|%40|\s?[\[(](?i:at)[\])]\s?)"
_EMAIL_DOT = r"(?:\.|\s?[\[(](?i:dot)[\])]\s?)"
_SECRET_LABELS = (
    r"api[_-]?key|apikey|x-api-key|api[_-]?secret|secret[_-]?key|secret|client[_-]?secret|"
    r"access[_-]?key|access[_-]?token|refresh[_-]?token|auth[_-]?token|id[_-]?token|"
    r"private[_-]?key|account[_-]?key|accountkey|sharedaccesskey|aws_secret_access_key|"
    r"password|passwd|passphrase|pass|pwd|pin|credentials?|token"
)

# Order matters: credentials first (they contain digits and dots that look like other things),
# then structured numbers with checksums, then the looser patterns.
DETECTORS: Final[tuple[Detector, ...]] = (
    Detector(
        "private_key",  # PEM (RSA, EC, DSA, OPENSSH, ENCRYPTED, ...) and PGP private key blocks
        re.compile(
            r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.S,
        ),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "putty_key",
        re.compile(r"PuTTY-User-Key-File-\d: .*?(?:Private-MAC: [0-9a-f]{1,128}|\Z)", re.S),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "url_credentials",  # scheme://user:password@host (any host: localhost, an IP, a name)
        re.compile(
            r"(?i)(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,20}://[^\s:/@]{0,128}:"
            r"(?P<v>[^\s/@]{1,256})@"
        ),
        "[SECRET]", _SECRET, group="v",
    ),
    Detector(
        "jwt",
        re.compile(r"(?<![\w-])eyJ[A-Za-z0-9_-]{5,4096}\.eyJ[A-Za-z0-9_-]{5,8192}"
                   r"\.[A-Za-z0-9_-]{5,4096}"),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "bearer",
        re.compile(r"(?i)(?<![\w-])(?:bearer|basic|token)\s{1,8}[A-Za-z0-9._~+/=-]{12,4096}"),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "api_key",
        re.compile(
            r"(?<![\w-])(?:"
            r"sk-(?:proj-|ant-|live-|test-|svcacct-)?[A-Za-z0-9_-]{16,256}"  # OpenAI, Anthropic
            r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,256}"  # Stripe
            r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key ids
            r"|AIza[0-9A-Za-z_-]{35}"  # Google API key
            r"|ya29\.[0-9A-Za-z_-]{20,512}"  # Google OAuth access token
            r"|gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{40,255}"  # GitHub
            r"|xox[abposr]-[A-Za-z0-9-]{10,255}"  # Slack tokens
            r"|glpat-[A-Za-z0-9_-]{20,255}"  # GitLab
            r"|hf_[A-Za-z0-9]{30,255}"  # Hugging Face
            r"|npm_[A-Za-z0-9]{36}"  # npm
            r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,512}"  # PyPI
            r"|SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"  # SendGrid
            r"|SK[0-9a-fA-F]{32}"  # Twilio API key
            r"|key-[0-9a-zA-Z]{32}"  # Mailgun
            r"|sq0(?:atp|csp)-[0-9A-Za-z_-]{22,43}"  # Square
            r"|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"  # Shopify
            r"|do[opr]_v1_[a-f0-9]{64}"  # DigitalOcean
            r"|dapi[a-f0-9]{32}"  # Databricks
            r")(?![\w-])"
            r"|https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{20,256}"
            r"|(?<!\d)\d{8,10}:AA[A-Za-z0-9_-]{33}(?![\w-])"  # Telegram bot token
        ),
        "[SECRET]", _SECRET,
    ),
    Detector(
        "labelled_secret",  # password=..., "api_key": "...", pass: ..., AccountKey=...
        re.compile(
            r"(?i)(?<![a-z0-9_-])(?:" + _SECRET_LABELS + r")"
            r"[\"']?[ \t]{0,8}(?::|=>|=)[ \t]{0,8}"
            r"(?:\"(?P<dq>[^\"\n]{1,256})\"|'(?P<sq>[^'\n]{1,256})'"
            r"|(?P<v>[^\s\"',;&]{1,256}))"
        ),
        "[SECRET]", _SECRET, group=("dq", "sq", "v"),
    ),
    Detector(
        "password_phrase",  # "my password is hunter2"
        re.compile(r"(?i)(?<![a-z0-9_-])(?:password|passwd|passphrase|pwd)\s{1,8}(?:is|was)"
                   r"\s{1,8}(?P<v>[^\s\"',;&]{1,256})"),
        "[SECRET]", _SECRET, group="v",
    ),
    Detector(
        "email",  # any script (NFKC-normalised first), %40, [at] / (at) and [dot] spellings
        re.compile(
            r"(?<![\w" + _MARKS + r".%+-])[\w" + _MARKS + r".%+-]{1,64}" + _EMAIL_AT
            + r"(?:[\w" + _MARKS + r"-]{1,63}" + _EMAIL_DOT + r"){1,10}"
            r"(?:(?:[^\W\d_]|[" + _MARKS + r"]){2,63}|xn--[a-z0-9-]{1,59})"
            r"(?![\w" + _MARKS + r"-])"
        ),
        "[EMAIL]", _PII,
    ),
    Detector(
        "iban",  # any case, spaces or dashes between characters; country length and mod-97
        re.compile(r"(?i)(?<![a-z0-9])[a-z]{2}\d{2}(?:[ -]?[a-z0-9]){11,32}"),
        "[IBAN]", _PII, trim=_iban_prefix,
    ),
    Detector(
        "card",  # 13-19 digits, grouped by spaces, dashes or dots, Luhn-checked
        re.compile(
            r"(?<!\d)(?<!\d[.,])(?:"
            r"\d{4}(?P<cs>[ .-]?)\d{4}(?P=cs)\d{4}(?P=cs)\d{1,7}"  # 4-4-4-4(-3)
            r"|\d{4}[ .-]?\d{6}[ .-]?\d{4,5}"  # Amex 4-6-5, Diners 4-6-4
            r"|\d{13,19}"
            r")(?!\d)(?![.,]\d)"
        ),
        "[CARD]", _PII, check=lambda s: luhn_ok(re.sub(r"\D", "", s)),
    ),
    Detector(
        "ssn",  # 219-09-9999, 219 09 9999, 078051120
        re.compile(r"(?<![\w.-])\d{3}(?P<ss>[ -]?)\d{2}(?P=ss)\d{4}(?![\w-]|\.\d)"),
        "[NATIONAL_ID]", _PII, check=_ssn_ok,
    ),
    Detector(
        "uk_nino",
        re.compile(r"(?i)(?<![a-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z]"
                   r"[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![a-z0-9])"),
        "[NATIONAL_ID]", _PII,
    ),
    Detector(
        "es_dni",
        re.compile(r"(?i)(?<![a-z0-9])[XYZ0-9]\d{7}-?[A-Z](?![a-z0-9])"),
        "[NATIONAL_ID]", _PII, check=lambda s: _dni_ok(s.replace("-", "")),
    ),
    Detector(
        "ipv4",
        re.compile(r"(?<![\w.])(?<!\d\.)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                   r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\w|\.\d)"),
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
            r"(?<![\w+(])(?<!\d[ .-])(?:"
            # +44 20 7946 0958, 0044 20 7946 0958, +44 (0)20 7946 0958, +1-415-555-0199
            r"(?:\+|00)[1-9]\d{0,2}[ .-]?(?:\(0?\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
            r"|\(\+[1-9]\d{0,2}\)[ .-]?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"  # (+44) 20 7946 0957
            # North American: (415) 555-0123, 415-555-0123, 415 555 0177, 4155550199, 1 800 ...
            r"|(?:1[ .-])?(?:\([2-9]\d{2}\)|[2-9]\d{2})[ .-]?[2-9]\d{2}[ .-]?\d{4}"
            r"|0\d{2,4}[ /-]\d{3,4}[ -]?\d{3,4}"  # national: 020 7946 0958, 030-1234567
            r")(?!\w)(?![ .-]\d)"
        ),
        "[PHONE]", _PII,
        check=lambda s: 8 <= len(re.sub(r"\D", "", s)) <= 15,
    ),
)

# Characters that hide text from a pattern without showing: zero-width spaces and joiners, the
# soft hyphen, word joiner, BOM, Mongolian vowel separator, invisible operators.
_INVISIBLE: Final = dict.fromkeys(
    map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"), None
)
MAX_SCAN_CHARS: Final = 65_536  # longer text is cut (and tagged truncated) before scanning


def normalize_text(text: str) -> str:
    """NFKC (a full-width e-mail address becomes ASCII), without invisible characters."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)


@dataclass
class MaskResult:
    """Masked text and the tags of what was found in it."""

    text: str
    tags: set[str] = field(default_factory=set)
    found: dict[str, int] = field(default_factory=dict)


def _masked_group(m: re.Match[str], group: str | int | tuple[str, ...]) -> str | int | None:
    if not isinstance(group, tuple):
        return group
    return next((g for g in group if m.group(g) is not None), None)


def mask_text(text: str) -> MaskResult:
    """Mask every detected PII or secret span in ``text``; return the text and tags found.

    The text is NFKC-normalised and stripped of invisible characters first (so the result is
    the normalised text), and cut to :data:`MAX_SCAN_CHARS`: every detector then runs in time
    linear in the length.
    """
    result = MaskResult(text)
    if not text:
        return result
    if len(text) > MAX_SCAN_CHARS:
        text = normalize_text(text[:MAX_SCAN_CHARS]) + "…"
        result.tags.add("truncated")
    else:
        text = normalize_text(text)
    result.text = text
    for det in DETECTORS:

        def repl(m: re.Match[str], det: Detector = det) -> str:
            group = _masked_group(m, det.group)
            if group is None:
                return m.group(0)
            value = m.group(group)
            keep_tail = ""
            if det.trim is not None:
                n = det.trim(value)
                if not n:
                    return m.group(0)
                value, keep_tail = value[:n], value[n:]
            elif det.check is not None and not det.check(value):
                return m.group(0)
            result.tags.add(det.tag)
            result.found[det.name] = result.found.get(det.name, 0) + 1
            if group == 0:
                return det.mask + keep_tail
            start, end = m.span(group)
            whole = m.group(0)
            off = m.start(0)
            return whole[: start - off] + det.mask + keep_tail + whole[end - off :]

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
        # Optional NER pass over tier-2 free text (tracehouse.ner.PresidioNer or any object
        # with mask(text) -> (text, count)); None: the regular detectors only.
        self.ner: Any = None

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

    def checked_id(self, value: Any, pattern: re.Pattern[str], tags: set[str]) -> str | None:
        """A trace / span id: kept when it matches ``pattern`` (W3C lowercase hex), else
        replaced by ``hmac:<32 hex>`` so that a malformed id (which the lake quarantines) is
        never in clear in the spool, the quarantine or anywhere else."""
        if value is None or value == "":
            return None
        text = str(value)
        if pattern.fullmatch(text):
            return text
        tags.add("ids_hashed")
        return "hmac:" + self.hash_id(text)[:32]

    def json_key(self, key: Any, tags: set[str]) -> str:
        """An object key of a JSON payload: masked like a value. A key that held something
        sensitive becomes ``<masked>~<12 hex of its keyed hash>``, so keys stay distinct."""
        text = str(key)
        m = mask_text(text)
        if not m.tags:
            return text
        tags |= m.tags
        return f"{m.text}~{self.hash_id(text)[:12]}"

    def json_value(self, value: Any, tags: set[str]) -> Any:
        """A JSON document with every string value and every object key masked."""
        if isinstance(value, str):
            return self.metadata(value, tags)
        if isinstance(value, list):
            return [self.json_value(v, tags) for v in value]
        if isinstance(value, dict):
            return {self.json_key(k, tags): self.json_value(v, tags) for k, v in value.items()}
        return value

    # ---- free text ---------------------------------------------------------------------

    def metadata(self, value: Any, tags: set[str]) -> str | None:
        """A tier-1 string (model name, version, operation): masked as a safety net."""
        if value is None:
            return None
        m = mask_text(str(value))
        tags |= m.tags
        return m.text

    def free_text(self, value: Any, tags: set[str], *, limit: int | None = None) -> str | None:
        """A tier-2 preview: masked (and names / places masked by the NER pass, when one is set),
        cut to ``limit`` (default: the preview length)."""
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
        if self.ner is not None:
            out, found = self.ner.mask(out)
            if found:
                tags.add("pii_masked")
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
                key = self.json_key(k, tags)  # keys can hold PII too: {"to": {"bob@...": 1}}
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
