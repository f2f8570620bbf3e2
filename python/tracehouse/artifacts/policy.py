"""The privacy policy file: retention classes per tenant and artifact kind / lake tier, and the
roles allowed to read tier-3 content.

TOML, path from ``--policy`` or ``TRACEHOUSE_POLICY``::

    [classes]                 # named retention classes: days to keep (omit `days`: keep forever)
    short = { days = 7 }
    standard = { days = 30 }
    long = { days = 365 }
    forever = {}

    [artifacts]               # tier-3 artifact store
    default = "standard"      # class of every kind and tenant not named below
    kinds = { prompt_template = "long" }
    [artifacts.tenants.acme]  # per tenant, per kind ("*" = every kind of that tenant)
    span_content = "short"

    [lake]                    # the lake: per tenant, per tier
    default = { tier2_text = "standard", spans = "long" }
    [lake.tenants.acme]
    tier2_text = "short"      # masked free text (tier 2) nulled after the class's days
    spans = "standard"        # span rows (tier 1 included) dropped after the class's days

    [access]
    content_roles = ["oncall", "privacy_officer"]   # TRACEHOUSE_ROLE values that may read tier 3

Resolution, most specific first: tenant + kind, tenant ``"*"``, kind, default. A class name
that is not defined is an error when the file is loaded, not when data is deleted.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tracehouse.errors import TracehouseError

POLICY_ENV: Final = "TRACEHOUSE_POLICY"
LAKE_TIERS: Final = ("tier2_text", "spans")


class PolicyError(TracehouseError, ValueError):
    """The policy file is missing, not TOML, or names an undefined class."""


@dataclass(frozen=True)
class Policy:
    """Retention classes and content-reading roles, as loaded from the policy file."""

    classes: dict[str, int | None]  # class -> days (None: forever)
    artifact_default: str | None = None
    artifact_kinds: dict[str, str] = field(default_factory=dict)
    artifact_tenants: dict[str, dict[str, str]] = field(default_factory=dict)
    lake_default: dict[str, str] = field(default_factory=dict)
    lake_tenants: dict[str, dict[str, str]] = field(default_factory=dict)
    content_roles: frozenset[str] = frozenset()
    source: str = "<memory>"

    def artifact_class(self, tenant_id: str, kind: str) -> str | None:
        """The retention class of ``kind`` artifacts of ``tenant_id`` (None: keep)."""
        tenant = self.artifact_tenants.get(tenant_id, {})
        return tenant.get(kind) or tenant.get("*") or self.artifact_kinds.get(kind) \
            or self.artifact_default

    def artifact_days(self, tenant_id: str, kind: str) -> int | None:
        """Days to keep ``kind`` artifacts of ``tenant_id`` (None: forever)."""
        cls = self.artifact_class(tenant_id, kind)
        return None if cls is None else self.classes[cls]

    def lake_class(self, tenant_id: str, tier: str) -> str | None:
        """The retention class of lake tier ``tier`` (tier2_text / spans) for ``tenant_id``."""
        return self.lake_tenants.get(tenant_id, {}).get(tier) or self.lake_default.get(tier)

    def lake_days(self, tenant_id: str, tier: str) -> int | None:
        """Days to keep lake tier ``tier`` of ``tenant_id`` (None: forever)."""
        cls = self.lake_class(tenant_id, tier)
        return None if cls is None else self.classes[cls]

    def lake_tenant_ids(self) -> list[str]:
        """Tenants named in the lake section (every other tenant follows the default)."""
        return sorted(self.lake_tenants)


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise PolicyError(f"{where} must map names to class names")
    return {str(k): v for k, v in value.items()}


def parse_policy(data: Mapping[str, Any], *, source: str = "<memory>") -> Policy:
    """A :class:`Policy` from the parsed TOML document; every class name checked."""
    classes: dict[str, int | None] = {}
    for name, spec in (data.get("classes") or {}).items():
        if not isinstance(spec, Mapping):
            raise PolicyError(f"{source}: classes.{name} must be a table like {{ days = 30 }}")
        days = spec.get("days")
        if days is not None and (not isinstance(days, int) or days < 0):
            raise PolicyError(f"{source}: classes.{name}.days must be a whole number >= 0")
        classes[str(name)] = days
    art = data.get("artifacts") or {}
    lake = data.get("lake") or {}
    access = data.get("access") or {}
    roles = access.get("content_roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise PolicyError(f"{source}: access.content_roles must be a list of role names")
    policy = Policy(
        classes=classes,
        artifact_default=art.get("default"),
        artifact_kinds=_str_map(art.get("kinds"), f"{source}: artifacts.kinds"),
        artifact_tenants={str(t): _str_map(m, f"{source}: artifacts.tenants.{t}")
                          for t, m in (art.get("tenants") or {}).items()},
        lake_default=_str_map(lake.get("default"), f"{source}: lake.default"),
        lake_tenants={str(t): _str_map(m, f"{source}: lake.tenants.{t}")
                      for t, m in (lake.get("tenants") or {}).items()},
        content_roles=frozenset(roles),
        source=source,
    )
    used = [("artifacts.default", policy.artifact_default)]
    used += [(f"artifacts.kinds.{k}", c) for k, c in policy.artifact_kinds.items()]
    used += [(f"artifacts.tenants.{t}.{k}", c)
             for t, m in policy.artifact_tenants.items() for k, c in m.items()]
    used += [(f"lake.default.{k}", c) for k, c in policy.lake_default.items()]
    used += [(f"lake.tenants.{t}.{k}", c)
             for t, m in policy.lake_tenants.items() for k, c in m.items()]
    for where, cls in used:
        if cls is not None and cls not in classes:
            raise PolicyError(f"{source}: {where} names class {cls!r}, which [classes] does "
                              f"not define (defined: {sorted(classes)})")
    bad_tiers = set(policy.lake_default) | {
        k for m in policy.lake_tenants.values() for k in m}
    if bad_tiers - set(LAKE_TIERS):
        raise PolicyError(f"{source}: lake tiers must be {list(LAKE_TIERS)}; "
                          f"got {sorted(bad_tiers - set(LAKE_TIERS))}")
    return policy


def load_policy(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Policy:
    """The policy from ``path``, else ``TRACEHOUSE_POLICY``; a clear error when neither is set."""
    env = os.environ if env is None else env
    chosen = path if path is not None else env.get(POLICY_ENV)
    if not chosen:
        raise PolicyError(f"no policy file: pass --policy or set {POLICY_ENV} (TOML; see "
                          "README, 'Privacy: tier-3 content, retention and audit')")
    p = Path(chosen)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read the policy file {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{p} is not valid TOML: {exc}") from None
    return parse_policy(data, source=str(p))
