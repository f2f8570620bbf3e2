"""The tier-3 artifact store: encrypted, content-addressed payloads; retention; audited reads.

- :mod:`~tracehouse.artifacts.keys`: master key -> wrapped data key per tenant; rotation.
- :mod:`~tracehouse.artifacts.store`: :class:`ArtifactStore` (``put``, ``put_span_content``,
  ``get``): the one writer of tier-3 content, used by ``serve`` and ``ingest otlp``.
- :mod:`~tracehouse.artifacts.policy`: the TOML policy (retention classes, content roles).
- :mod:`~tracehouse.artifacts.expire`: ``tracehouse artifacts expire``.
- :mod:`~tracehouse.artifacts.audit` and :mod:`~tracehouse.artifacts.content`: audited reads.
"""

from tracehouse.artifacts.keys import ArtifactKeyError, MasterKey, rotate_master_key
from tracehouse.artifacts.store import ArtifactError, ArtifactStore, ArtifactTamperedError

__all__ = [
    "ArtifactError",
    "ArtifactKeyError",
    "ArtifactStore",
    "ArtifactTamperedError",
    "MasterKey",
    "rotate_master_key",
]
