"""The tier-3 artifact store: encrypted, content-addressed, deduplicated payload files.

Layout (``--artifact-dir``, never inside the lake)::

    <store>/_keys/<tenant>.json                       the tenant's data key, wrapped (keys.py)
    <store>/<tenant>/<kind>/<aa>/<address>.tha        one payload: b"THA1" + nonce + AES-GCM

``address`` is the HMAC-SHA256 of the payload (kind + canonical JSON) under the tenant's address
key: the same content of the same tenant is stored once (a prompt template once per version),
and the address cannot be confirmed by hashing a guessed text without the key. The associated
data of each ciphertext is ``tenant|kind|address``, so a payload moved to another address,
kind or tenant fails to decrypt, as does any changed byte. A payload's age, for retention, is
the time since it was last written or referenced again by a new span (the file's mtime).

The lake keeps only the reference (``artifact_refs``): ``artifact_id`` = address, ``kind``,
``uri`` = ``tracehouse-artifact://<tenant>/<kind>/<address>``, ``privacy_class`` = ``tier3``,
``bytes`` and ``sha256`` of the stored (encrypted) file.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from tracehouse.artifacts.keys import (
    KEYS_DIR,
    MasterKey,
    TenantKeys,
    load_tenant_keys,
    read_key_record,
    tenant_dir_name,
)
from tracehouse.errors import TracehouseError

MAGIC: Final = b"THA1"
SUFFIX: Final = ".tha"
URI_SCHEME: Final = "tracehouse-artifact://"
SPAN_CONTENT: Final = "span_content"
PROMPT_TEMPLATE: Final = "prompt_template"
# Content keys that hold the prompt template itself: stored apart so they dedup per version.
PROMPT_TEMPLATE_KEYS: Final = frozenset(
    {"llm.prompt_template.template", "gen_ai.system_instructions"}
)


class ArtifactError(TracehouseError, RuntimeError):
    """An artifact cannot be read: missing, tampered with, or not from this store."""


class ArtifactTamperedError(ArtifactError):
    """A payload's bytes do not authenticate under its tenant key, kind and address."""


@dataclass(frozen=True)
class StoredArtifact:
    """One payload file, as found on disk (no key needed to list them)."""

    tenant_dir: str
    kind: str
    address: str
    path: Path
    mtime: float
    size: int


def parse_uri(uri: str) -> tuple[str, str, str]:
    """(tenant folder, kind, address) of a ``tracehouse-artifact://`` URI."""
    if not uri.startswith(URI_SCHEME):
        raise ArtifactError(f"not an artifact of this store: {uri!r}")
    parts = uri.removeprefix(URI_SCHEME).split("/")
    if len(parts) != 3 or not all(parts):
        raise ArtifactError(f"malformed artifact URI: {uri!r}")
    return parts[0], parts[1], parts[2]


def _canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str).encode("utf-8")


class ArtifactStore:
    """Encrypted tier-3 payloads kept outside the lake.

    ``master_key`` defaults to ``TRACEHOUSE_MASTER_KEY``, read at construction (a clear
    :class:`ArtifactKeyError` when it is not set) unless ``require_key`` is false.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        lake: Path | str | None = None,
        master_key: MasterKey | None = None,
        require_key: bool = True,
    ) -> None:
        self.root = Path(root).resolve()
        if lake is not None:
            lake_root = Path(lake).resolve()
            if self.root == lake_root or lake_root in self.root.parents:
                raise ValueError(
                    f"the artifact store {self.root} must not be inside the lake {lake_root}: "
                    "tier-3 content never lands in the lake"
                )
        # the key is checked now (a writer fails at start-up, not on its first span) unless
        # the caller only lists and deletes (artifacts expire)
        self._master = master_key or (MasterKey.from_env() if require_key else None)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._keys: dict[str, TenantKeys] = {}

    # ---- keys --------------------------------------------------------------------------

    @property
    def master(self) -> MasterKey:
        """The master key: as given, else ``TRACEHOUSE_MASTER_KEY`` (read when first needed)."""
        if self._master is None:
            self._master = MasterKey.from_env()
        return self._master

    def tenant_keys(self, tenant_id: str, *, create: bool = False) -> TenantKeys:
        """The tenant's keys (created on first write); :class:`ArtifactKeyError` if wrong."""
        keys = self._keys.get(tenant_id)
        if keys is None:
            found = load_tenant_keys(self.root, self.master, tenant_id, create=create)
            if found is None:
                raise ArtifactError(f"tenant {tenant_id!r} has no data key in {self.root}")
            keys = self._keys[tenant_id] = found
        return keys

    def tenants(self) -> dict[str, str]:
        """Tenant folder -> tenant id, for every tenant with a data key."""
        out = {}
        for path in sorted((self.root / KEYS_DIR).glob("*.json")):
            out[path.stem] = str(read_key_record(path)["tenant_id"])
        return out

    # ---- write -------------------------------------------------------------------------

    def _path(self, tenant_id: str, kind: str, address: str) -> Path:
        return self.root / tenant_dir_name(tenant_id) / kind / address[:2] / f"{address}{SUFFIX}"

    @staticmethod
    def _aad(tenant_id: str, kind: str, address: str) -> bytes:
        return f"{tenant_id}|{kind}|{address}".encode()

    def put(self, kind: str, payload: Any, *, tenant_id: str) -> dict[str, Any]:
        """Store ``payload`` (JSON-able) encrypted for ``tenant_id``; return its ``artifact_refs``
        entry. The same content is stored once: a second put only refreshes its age."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not kind.replace("_", "").isalnum():
            raise ValueError(f"artifact kind {kind!r} must be letters, digits and underscores")
        keys = self.tenant_keys(tenant_id, create=True)
        plaintext = _canonical(payload)
        address = keys.address(kind, plaintext)
        path = self._path(tenant_id, kind, address)
        try:
            os.utime(path)  # stored already: referenced again, so retention counts from now
            data = path.read_bytes()
        except FileNotFoundError:  # new (or expired a moment ago): write it
            nonce = secrets.token_bytes(12)
            sealed = AESGCM(keys.enc_key).encrypt(
                nonce, zlib.compress(plaintext, 6), self._aad(tenant_id, kind, address)
            )
            data = MAGIC + nonce + sealed
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                tmp.replace(path)
            finally:
                tmp.unlink(missing_ok=True)
        return {
            "artifact_id": address,
            "kind": kind,
            "uri": f"{URI_SCHEME}{tenant_dir_name(tenant_id)}/{kind}/{address}",
            "privacy_class": "tier3",
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def put_span_content(self, content: Mapping[str, Any], *, tenant_id: str
                         ) -> list[dict[str, Any]]:
        """Store a span's tier-3 content; return its ``artifact_refs``.

        The prompt template (``llm.prompt_template.template``, ``gen_ai.system_instructions``)
        becomes its own ``prompt_template`` artifact, stored once however many spans use it;
        everything else is one ``span_content`` artifact.
        """
        template = {k: v for k, v in content.items() if k in PROMPT_TEMPLATE_KEYS}
        rest = {k: v for k, v in content.items() if k not in PROMPT_TEMPLATE_KEYS}
        refs = []
        if template:
            refs.append(self.put(PROMPT_TEMPLATE, template, tenant_id=tenant_id))
        if rest:
            refs.append(self.put(SPAN_CONTENT, rest, tenant_id=tenant_id))
        return refs

    # ---- read --------------------------------------------------------------------------

    def get(self, uri: str) -> Any:
        """The payload behind an artifact URI, decrypted and authenticated."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        tenant_dir, kind, address = parse_uri(uri)
        tenants = self.tenants()
        if tenant_dir not in tenants:
            raise ArtifactError(f"no data key for tenant folder {tenant_dir!r} in {self.root}")
        tenant_id = tenants[tenant_dir]
        keys = self.tenant_keys(tenant_id)
        path = self._path(tenant_id, kind, address)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"artifact {address[:16]}… ({kind}) is not in the store: "
                                "expired or never stored here") from None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 12 + 16:
            raise ArtifactTamperedError(f"{path} is not an artifact payload")
        nonce, sealed = data[4:16], data[16:]
        try:
            packed = AESGCM(keys.enc_key).decrypt(nonce, sealed, self._aad(tenant_id, kind,
                                                                          address))
        except InvalidTag:
            raise ArtifactTamperedError(
                f"{path} does not authenticate: the payload was changed or moved"
            ) from None
        plaintext = zlib.decompress(packed)
        if keys.address(kind, plaintext) != address:
            raise ArtifactTamperedError(f"{path}: content does not match its address")
        return json.loads(plaintext)

    # ---- listing -----------------------------------------------------------------------

    def iter_stored(self) -> Iterator[StoredArtifact]:
        """Every payload file in the store (no key needed)."""
        for path in sorted(self.root.glob(f"*/*/*/*{SUFFIX}")):
            tenant_dir, kind = path.parts[-4], path.parts[-3]
            if tenant_dir == KEYS_DIR:
                continue
            st = path.stat()
            yield StoredArtifact(tenant_dir, kind, path.stem, path, st.st_mtime, st.st_size)


def stored_at(artifact: StoredArtifact) -> datetime:
    """When a payload was last written or referenced (UTC)."""
    return datetime.fromtimestamp(artifact.mtime, tz=UTC)
