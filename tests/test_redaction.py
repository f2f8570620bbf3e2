"""Redaction: each PII and secret class, checksums, keyed hashing, allow-listing, artifacts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tracehouse.redaction import (
    ArtifactStore,
    MissingHashKeyError,
    Redactor,
    iban_ok,
    luhn_ok,
    mask_text,
)

KEY = b"test-key-0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to jane.doe+billing@example.co.uk today", "write to [EMAIL] today"),
        ("call +44 20 7946 0958", "call [PHONE]"),
        ("call (415) 555-0123 or 415.555.0199", "call [PHONE] or [PHONE]"),
        ("ruf 030 1234 5678 an", "ruf [PHONE] an"),
        ("visa 4111 1111 1111 1111 ok", "visa [CARD] ok"),
        ("mc 5500-0055-5555-5559", "mc [CARD]"),
        ("amex 378282246310005", "amex [CARD]"),
        ("iban DE89 3704 0044 0532 0130 00 ok", "iban [IBAN] ok"),
        ("GB82WEST12345698765432", "[IBAN]"),
        ("from 10.0.12.7 and 2001:db8::8a2e:370:7334", "from [IP] and [IP]"),
        ("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "key [SECRET]"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstuv", "anthropic [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [SECRET]"),
        ("gh ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij", "gh [SECRET]"),
        ("Authorization: Bearer abc.def-ghijkl123456", "Authorization: [SECRET]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
         "jwt [SECRET]"),
        ("password=hunter2secret; api_key: 'abcd1234efgh'",
         "password=[SECRET]; api_key: '[SECRET]'"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "[SECRET]"),
        ("ssn 123-45-6789", "ssn [NATIONAL_ID]"),
        ("nino AB 12 34 56 C", "nino [NATIONAL_ID]"),
        ("dni 12345678Z", "dni [NATIONAL_ID]"),
    ],
)
def test_each_class_is_masked(text: str, masked: str) -> None:
    assert mask_text(text).text == masked


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn-invalid: not a card
        "iban DE89 3704 0044 0532 0130 01",  # mod-97-invalid
        "ssn 000-12-3456",
        "dni 12345678A",  # wrong check letter
        "gpt-4o-2024-08-06 v1.2.3 took 1234.5 ms at 2026-03-04T09:00:00Z",
        "chunk-000123 trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "order 12345678901 total 1500000 at 12:30:45",
        "sk-short",
    ],
)
def test_no_false_positives_on_metadata(text: str) -> None:
    assert mask_text(text).text == text


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89 3704 0044 0532 0130 01")


def test_tags_distinguish_pii_and_secrets() -> None:
    assert mask_text("a@b.io").tags == {"pii_masked"}
    assert mask_text("AKIAIOSFODNN7EXAMPLE").tags == {"secret_masked"}
    assert mask_text("nothing here").tags == set()


def test_hmac_is_deterministic_keyed_and_not_the_plain_hash() -> None:
    a, b = Redactor(KEY), Redactor(KEY)
    other = Redactor(b"another-key-0123456789")
    assert a.hash_id("user-1") == b.hash_id("user-1")
    assert a.hash_id("user-1") != a.hash_id("user-2")
    assert a.hash_id("user-1") != other.hash_id("user-1")
    assert a.hash_id("user-1") != hashlib.sha256(b"user-1").hexdigest()
    assert len(a.hash_id("x")) == 64
    digest = a.hash_id("user-1")
    assert a.id_hash_column(digest) == digest  # already a digest: kept, so joins survive
    assert a.id_hash_column("jane@example.com") == a.hash_id("jane@example.com")


def test_identifiers_hashed_only_when_sensitive() -> None:
    r, tags = Redactor(KEY), set()
    assert r.safe_identifier("conv-123", tags) == "conv-123" and not tags
    assert r.safe_identifier("jane@example.com", tags) == r.hash_id("jane@example.com")
    assert tags == {"ids_hashed"}


def test_free_text_preview_is_masked_and_truncated() -> None:
    r, tags = Redactor(KEY, preview_chars=20), set()
    out = r.free_text("mail jane@example.com about the refund please", tags)
    assert out == "mail [EMAIL] about …" and len(out) == 20
    assert tags == {"pii_masked", "contains_user_text", "truncated"}


def test_tool_args_keep_only_allowlisted_fields() -> None:
    r = Redactor(KEY, tool_args_allowlist={"date_from", "crm.region"})
    tags: set[str] = set()
    args = {"date_from": "2026-02-01", "account_id": "ACC-1", "region": "eu",
            "filter": {"date_from": "x@y.io", "email": "x@y.io"}, "ids": [1, 2]}
    out = r.tool_args(args, tags, tool_name="crm")
    assert out["date_from"] == "2026-02-01"
    assert out["region"] == "eu"  # allowed for this tool only
    assert out["account_id"] == "hmac:" + r.hash_id('"ACC-1"')[:32]
    assert out["filter"] == {"date_from": "[EMAIL]", "email": out["filter"]["email"]}
    assert out["filter"]["email"].startswith("hmac:") and out["ids"].startswith("hmac:")
    assert r.tool_args(args, set(), tool_name="other")["region"].startswith("hmac:")
    assert {"args_allowlisted", "ids_hashed", "pii_masked"} <= tags
    assert r.tool_args("free text args", set()) == {"_value": r.tool_args("free text args",
                                                                           set())["_value"]}


def test_key_policy(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(MissingHashKeyError, match="TRACEHOUSE_HASH_KEY"):
        Redactor.from_env({})
    with pytest.raises(MissingHashKeyError, match="at least"):
        Redactor.from_env({"TRACEHOUSE_HASH_KEY": "short"})
    r = Redactor.from_env({"TRACEHOUSE_HASH_KEY": KEY.decode(),
                           "TRACEHOUSE_TOOL_ARGS_ALLOWLIST": "ticket_id, crm.owner"})
    assert r.hash_id("u") == Redactor(KEY).hash_id("u")
    assert {"ticket_id", "crm.owner", "date_from"} <= r.tool_args_allowlist
    with caplog.at_level("WARNING"):
        eph = Redactor.from_env({}, allow_ephemeral=True)
    assert eph.ephemeral and "EPHEMERAL" in caplog.text


def test_artifact_store_is_outside_the_lake_and_encrypted(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEHOUSE_MASTER_KEY", "master-key-0123456789abcdef")
    lake = tmp_path / "lake"
    with pytest.raises(ValueError, match="must not be inside the lake"):
        ArtifactStore(lake / "artifacts", lake=lake)
    store = ArtifactStore(tmp_path / "artifacts", lake=lake)
    ref = store.put("span_content", {"input.value": "jane@example.com"}, tenant_id="acme")
    assert ref["privacy_class"] == "tier3" and ref["bytes"] > 0
    (path,) = (tmp_path / "artifacts").rglob(f"{ref['artifact_id']}.tha")
    assert path.read_bytes().count(b"jane@example.com") == 0  # encrypted at rest
    assert oct(path.stat().st_mode)[-3:] == "600"
    assert store.put("span_content", {"input.value": "jane@example.com"}, tenant_id="acme") == ref
