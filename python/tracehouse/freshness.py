"""Source freshness: warn when a lake dataset stops arriving; never fail a run.

The thresholds are the ``freshness.warn_after`` of each lake source in
``models/staging/lake/_lake__sources.yml`` (generated from ``tracehouse.contract.dbt_export``).
A run that builds on DuckDB checks them against ``max(ingest_time)`` of each base table in
the build database (what ``dbt source freshness`` computes over the lake, without starting dbt
again; other engines ask ``dbt source freshness``); a run that found nothing new checks the
same thresholds against the newest loads the last building run saw (nothing has landed
since), without starting dbt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SOURCES_YML = Path("models") / "staging" / "lake" / "_lake__sources.yml"
_PERIOD = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass
class Freshness:
    """One dataset's freshness: when it last loaded, its age and the verdict."""

    dataset: str
    status: str  # pass, warn, or unknown (no rows / could not check)
    max_loaded_at: datetime | None
    age_s: float | None
    warn_after_s: float | None

    def line(self) -> str:
        """e.g. ``spans: last loaded 7.2 h ago (warn after 6 h)``."""
        if self.max_loaded_at is None:
            return f"{self.dataset}: nothing loaded yet"
        limit = f" (warn after {_human(self.warn_after_s)})" if self.warn_after_s else ""
        return f"{self.dataset}: last loaded {_human(self.age_s)} ago{limit}"


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"


def thresholds(project: Path) -> dict[str, float]:
    """dataset -> warn_after in seconds, from the sources YAML."""
    import yaml  # type: ignore[import-untyped,unused-ignore]

    doc = yaml.safe_load((project / SOURCES_YML).read_text(encoding="utf-8"))
    out: dict[str, float] = {}
    for source in doc.get("sources", []):
        for table in source.get("tables", []):
            warn = (table.get("freshness") or {}).get("warn_after") or {}
            if warn.get("count") and warn.get("period") in _PERIOD:
                out[table["name"]] = float(warn["count"]) * _PERIOD[warn["period"]]
    return out


def from_dbt(lake: Path, warehouse: Path, project: Path) -> list[Freshness]:
    """``dbt source freshness`` on the lake sources."""
    from tracehouse.warehouse import dbt_invoke

    limits = thresholds(project)
    res = dbt_invoke(["source", "freshness", "--select", "source:lake"], lake=lake,
                     warehouse=warehouse)
    out = []
    for r in res.results:
        node = getattr(r, "node", None)
        if not str(getattr(node, "unique_id", "")).startswith("source."):
            continue  # the on-run-start hook reports a result too
        name = getattr(node, "name", "?")
        max_loaded = getattr(r, "max_loaded_at", None)
        age = getattr(r, "age", None)
        status = str(r.status)
        out.append(Freshness(name, "pass" if status == "pass" else status,
                             max_loaded, float(age) if age is not None else None,
                             limits.get(name)))
    if not out and res.failures:
        raise RuntimeError("; ".join(res.failures))
    return sorted(out, key=lambda f: f.dataset)


def from_warehouse(warehouse: Path, project: Path,
                   now: datetime | None = None) -> list[Freshness]:
    """The thresholds against ``max(ingest_time)`` of the build database's base tables.

    What ``dbt source freshness`` computes over the lake, without a second dbt invocation: a
    base table keeps the latest copy of every id, so its newest ``ingest_time`` is the lake's.
    """
    import duckdb

    from tracehouse.warehouse import warehouse_db

    con = duckdb.connect(str(warehouse_db(warehouse)), read_only=True)
    try:
        names = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging'"
        ).fetchall()}
        newest: dict[str, str | None] = {}
        for name in thresholds(project):
            if f"base_lake__{name}" not in names:
                raise RuntimeError(f"no base table for {name} in the build database")
            (at,) = con.execute(  # type: ignore[misc]
                f"SELECT max(ingest_time) FROM staging.base_lake__{name}").fetchone()
            newest[name] = at.isoformat() if at is not None else None
    finally:
        con.close()
    return from_record(newest, project, now)


def from_record(max_loaded: dict[str, str | None], project: Path,
                now: datetime | None = None) -> list[Freshness]:
    """The thresholds against the newest loads a previous run saw (nothing landed since)."""
    now = now or datetime.now(UTC)
    out = []
    for name, limit in sorted(thresholds(project).items()):
        text = max_loaded.get(name)
        at = datetime.fromisoformat(text) if text else None
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        age = (now - at).total_seconds() if at else None
        status = "unknown" if age is None else ("warn" if age > limit else "pass")
        out.append(Freshness(name, status, at, age, limit))
    return out


def summary(results: list[Freshness]) -> str:
    """The step line: all fresh, or which datasets stopped arriving."""
    stale = [f for f in results if f.status != "pass"]
    if not stale:
        return f"{len(results)} lake sources fresh"
    return (f"WARN {len(stale)} of {len(results)} lake sources stale: "
            + "; ".join(f.line() for f in stale))

