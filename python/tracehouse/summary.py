"""A short account of a warehouse: what was built, what it cost, what was injected and found."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tracehouse.publication import connect, current_folder


@dataclass
class Summary:
    """Headline figures of a published warehouse."""

    marts_folder: Path
    marts: list[str]
    run_id: str | None = None
    requests: int | None = None
    total_cost_usd: float | None = None
    successful_tasks: int | None = None
    first_day: str | None = None
    last_day: str | None = None
    lake_received: int | None = None
    lake_accepted: int | None = None
    lake_quarantined: int | None = None
    incidents: list[dict[str, object]] = field(default_factory=list)
    change_points: int | None = None

    def lines(self) -> list[str]:
        """The summary as printable lines."""
        out = [f"marts:      {self.marts_folder} ({len(self.marts)} tables, "
               f"published by run {self.run_id})"]
        if self.requests is not None:
            out.append(
                f"requests:   {self.requests:,} from {self.first_day} to {self.last_day}, "
                f"${self.total_cost_usd or 0:,.2f} in total"
            )
            if self.successful_tasks:
                per = (self.total_cost_usd or 0) / self.successful_tasks
                out.append(
                    f"successful: {self.successful_tasks:,} tasks "
                    f"(${per:.4f} per successful task)"
                )
        if self.lake_received is not None:
            out.append(
                f"lake:       received {self.lake_received:,} = accepted "
                f"{self.lake_accepted:,} + quarantined {self.lake_quarantined:,}"
            )
        if self.change_points is not None:
            out.append(f"changes:    {self.change_points} change points detected")
        if self.incidents:
            out.append(f"incidents injected ({len(self.incidents)}):")
            for inc in self.incidents:
                cause = inc.get("cause") or "no version change"
                metrics = inc.get("metrics")
                moves = ", ".join(str(m) for m in metrics) if isinstance(metrics, list) else ""
                out.append(
                    f"  - {inc.get('start_time')}  {inc.get('name')}  in {inc.get('segment')}"
                    f"  cause: {cause}  moves: {moves}"
                )
        return out


def summarize(
    warehouse: Path | str, *, lake: Path | str | None = None, truth: Path | str | None = None
) -> Summary:
    """Read the current publication (and optionally the lake ledger and a truth file).

    Raises FileNotFoundError before the first publication.
    """
    con = connect(warehouse)  # one publication for every figure below
    try:
        marts = sorted(r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() AND table_name NOT LIKE 'stg_%'"
        ).fetchall())
        folder = current_folder(warehouse) or Path(warehouse) / "marts"
        summary = Summary(marts_folder=Path(warehouse) / "marts", marts=marts,
                          run_id=folder.name)
        if "fct_requests" in marts:
            row = con.execute(
                "SELECT count(*), sum(cost_usd), count(*) FILTER (WHERE is_successful_task), "
                "min(trace_date)::VARCHAR, max(trace_date)::VARCHAR FROM marts.fct_requests"
            ).fetchone()
            assert row is not None
            (summary.requests, summary.total_cost_usd, summary.successful_tasks,
             summary.first_day, summary.last_day) = row
        if "change_points" in marts:
            summary.change_points = con.execute(
                "SELECT count(*) FROM marts.change_points"
            ).fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    if lake is not None:
        from tracehouse.lake import lake_status

        rows = lake_status(lake).to_pylist()
        summary.lake_received = sum(r["received"] for r in rows)
        summary.lake_accepted = sum(r["accepted"] for r in rows)
        summary.lake_quarantined = sum(r["quarantined"] for r in rows)
    if truth is not None and Path(truth).is_file():
        data = json.loads(Path(truth).read_text(encoding="utf-8"))
        summary.incidents = data["incidents"] if isinstance(data, dict) else data
    return summary
