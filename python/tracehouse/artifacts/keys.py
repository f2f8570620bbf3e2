"""Envelope encryption for the tier-3 artifact store: a master key wraps one data key per tenant.

- The **master key** comes from ``TRACEHOUSE_MASTER_KEY`` (any secret of at least 16 bytes; a
  64-hex-char random string is the intended form). It is never stored. A key-encryption key
  (KEK) is derived from it with HKDF-SHA256, and its fingerprint (``kek_id``, an HMAC of a fixed
  label, not the key) is written next to each wrapped data key so that a wrong master key is
  reported as such rather than as corrupt data.
- Each **tenant** gets a random 32-byte data key, stored only wrapped (AES-256-GCM under the
  KEK, the tenant id as associated data) in ``<store>/_keys/<tenant>.json``. Two sub-keys are
  derived from it: one encrypts payloads, one computes content addresses (HMAC-SHA256).
- **Rotation** re-wraps the data keys under a new master key; payloads are not touched.

Losing the master key loses every payload; that is the only way to lose access.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tracehouse.errors import ConfigurationError

MASTER_KEY_ENV: Final = "TRACEHOUSE_MASTER_KEY"
NEW_MASTER_KEY_ENV: Final = "TRACEHOUSE_NEW_MASTER_KEY"
MIN_MASTER_KEY_BYTES: Final = 16
KEYS_DIR: Final = "_keys"
_KDF_SALT: Final = b"tracehouse-artifacts-v1"


class ArtifactKeyError(ConfigurationError, RuntimeError):
    """The master key is missing, wrong for this store, or a wrapped data key is damaged."""


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_KDF_SALT, info=info).derive(secret)


@dataclass(frozen=True)
class MasterKey:
    """The key-encryption key derived from a master secret, and its public fingerprint."""

    kek: bytes
    kek_id: str

    @classmethod
    def from_secret(cls, secret: str | bytes) -> MasterKey:
        """Derive the KEK from a master secret (>= 16 bytes)."""
        raw = secret.encode("utf-8") if isinstance(secret, str) else secret
        if len(raw) < MIN_MASTER_KEY_BYTES:
            raise ArtifactKeyError(
                f"the master key must be at least {MIN_MASTER_KEY_BYTES} bytes; got {len(raw)}"
            )
        kek = _hkdf(raw, b"kek")
        kek_id = hmac.new(kek, b"tracehouse-kek-id", hashlib.sha256).hexdigest()[:16]
        return cls(kek, kek_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, var: str = MASTER_KEY_ENV
                 ) -> MasterKey:
        """The master key from ``var`` (default ``TRACEHOUSE_MASTER_KEY``), or a clear error."""
        env = os.environ if env is None else env
        raw = env.get(var, "")
        if not raw:
            raise ArtifactKeyError(
                f"{var} is not set. The tier-3 artifact store encrypts every payload under a "
                "data key per tenant wrapped by this master key; set it, e.g. `export "
                f"{var}=$(python -c 'import secrets; print(secrets.token_hex(32))')`, and keep "
                "it in a secret manager: without it nothing in the store can be read."
            )
        return cls.from_secret(raw)


@dataclass(frozen=True)
class TenantKeys:
    """A tenant's unwrapped data key, as its two derived sub-keys."""

    tenant_id: str
    enc_key: bytes  # AES-256-GCM key for payloads
    mac_key: bytes  # HMAC-SHA256 key for content addresses

    def address(self, kind: str, plaintext: bytes) -> str:
        """The content address of ``plaintext`` of ``kind``: keyed, so it reveals nothing."""
        msg = kind.encode("utf-8") + b"\x00" + plaintext
        return hmac.new(self.mac_key, msg, hashlib.sha256).hexdigest()


_SAFE_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def tenant_dir_name(tenant_id: str) -> str:
    """The folder name of a tenant: the id itself when path-safe, else ``t-<sha256 prefix>``."""
    if _SAFE_TENANT.match(tenant_id) and tenant_id != KEYS_DIR:
        return tenant_id
    return "t-" + hashlib.sha256(tenant_id.encode("utf-8")).hexdigest()[:24]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"))


def _aad(tenant_id: str) -> bytes:
    return b"tracehouse-data-key|" + tenant_id.encode("utf-8")


def key_file(root: Path, tenant_id: str) -> Path:
    """Where the wrapped data key of ``tenant_id`` lives."""
    return root / KEYS_DIR / f"{tenant_dir_name(tenant_id)}.json"


def _wrap(master: MasterKey, tenant_id: str, data_key: bytes, created_at: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(12)
    wrapped = AESGCM(master.kek).encrypt(nonce, data_key, _aad(tenant_id))
    return {
        "version": 1,
        "tenant_id": tenant_id,
        "kek_id": master.kek_id,
        "nonce": _b64(nonce),
        "wrapped_key": _b64(wrapped),
        "created_at": created_at,
        "wrapped_at": datetime.now(UTC).isoformat(),
    }


def _unwrap(master: MasterKey, record: Mapping[str, Any], path: Path) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if record.get("kek_id") != master.kek_id:
        raise ArtifactKeyError(
            f"wrong master key for {path}: the data key of tenant {record.get('tenant_id')!r} "
            f"is wrapped by master key {record.get('kek_id')}, and {MASTER_KEY_ENV} is "
            f"{master.kek_id}. Set the master key this store was written (or last rotated) with."
        )
    try:
        return AESGCM(master.kek).decrypt(
            _unb64(record["nonce"]), _unb64(record["wrapped_key"]), _aad(record["tenant_id"])
        )
    except (InvalidTag, KeyError, ValueError) as exc:
        raise ArtifactKeyError(f"the wrapped data key in {path} is damaged: {exc!r}") from None


def _write_json_atomic(path: Path, record: Mapping[str, Any], *, exclusive: bool) -> bool:
    """Write ``record`` to ``path`` (fsynced, mode 600). ``exclusive``: fail if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # atomic, and fails if another process created it first
            except FileExistsError:
                return False
        else:
            tmp.replace(path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def read_key_record(path: Path) -> dict[str, Any]:
    """The JSON record of one wrapped data key."""
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactKeyError(f"cannot read the wrapped data key {path}: {exc}") from None
    return record


def _derive(tenant_id: str, data_key: bytes) -> TenantKeys:
    return TenantKeys(tenant_id, _hkdf(data_key, b"payload"), _hkdf(data_key, b"address"))


def load_tenant_keys(root: Path, master: MasterKey, tenant_id: str, *, create: bool
                     ) -> TenantKeys | None:
    """The tenant's keys: unwrapped from its key file, or (``create``) a new data key.

    Returns None when the tenant has no key yet and ``create`` is false.
    """
    path = key_file(root, tenant_id)
    if not path.exists():
        if not create:
            return None
        data_key = secrets.token_bytes(32)
        record = _wrap(master, tenant_id, data_key, datetime.now(UTC).isoformat())
        if _write_json_atomic(path, record, exclusive=True):
            return _derive(tenant_id, data_key)
        # another writer created it first: use theirs
    record = read_key_record(path)
    if record.get("tenant_id") != tenant_id:
        raise ArtifactKeyError(f"{path} holds the key of tenant {record.get('tenant_id')!r}, "
                               f"not {tenant_id!r}")
    return _derive(tenant_id, _unwrap(master, record, path))


@dataclass
class RotationReport:
    """What :func:`rotate_master_key` did."""

    rewrapped: list[str]
    already_new: list[str]
    new_kek_id: str


def rotate_master_key(root: Path | str, old: MasterKey, new: MasterKey) -> RotationReport:
    """Re-wrap every tenant's data key from ``old`` to ``new``; payloads are not touched.

    Every key is unwrapped first (so a wrong old key changes nothing), then each key file is
    replaced atomically. A rotation interrupted half-way can be re-run with the same two keys:
    files already under ``new`` are left alone.
    """
    root = Path(root)
    report = RotationReport([], [], new.kek_id)
    pending: list[tuple[Path, dict[str, Any], bytes]] = []
    for path in sorted((root / KEYS_DIR).glob("*.json")):
        record = read_key_record(path)
        if record.get("kek_id") == new.kek_id:
            report.already_new.append(record["tenant_id"])
            continue
        pending.append((path, record, _unwrap(old, record, path)))
    for path, record, data_key in pending:
        rewrapped = _wrap(new, record["tenant_id"], data_key, record.get("created_at", ""))
        _write_json_atomic(path, rewrapped, exclusive=False)
        report.rewrapped.append(record["tenant_id"])
    return report
