"""Send due alerts to the configured destinations; keep the state and a delivery log.

Two steps of `tracehouse run` call this module:

* after detection, :func:`track_alerts` turns this run's alerts into the alert state
  (:mod:`tracehouse.alerting.state`) and writes it as `marts.alerts`, so the published `alerts`
  mart holds every alert with its lifecycle (open / resolved, first raised, last seen);
* after publish, :func:`notify` sends each due alert (new, or more severe than when it was sent)
  to every destination, marks it sent when all destinations took it, appends every attempt to
  `W/state/deliveries.jsonl`, and saves the state. It never raises for a delivery problem: a
  destination that fails an alert after its retries is skipped for the rest of the run (so a
  hanging endpoint costs one timeout per attempt, not one per alert), and what it missed stays
  due for the next run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from tracehouse.alerting.destinations import (
    Delivery,
    Destination,
    alert_payload,
    destinations_from_env,
)
from tracehouse.alerting.state import (
    SEVERITY_RANK,
    is_due,
    load_state,
    mark_notified,
    save_state,
    track,
)

DELIVERY_LOG = Path("state") / "deliveries.jsonl"


@dataclass
class NotifyResult:
    """What one notify pass did."""

    due: int = 0
    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deliveries: list[tuple[str, Delivery]] = field(default_factory=list)
    destinations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the run's step output (destinations by variable name, never URL)."""
        if not self.destinations:
            return f"{self.due} alert(s) due; no destination configured"
        where = ", ".join(self.destinations)
        text = f"{len(self.sent)} of {self.due} due alert(s) delivered to {where}"
        if self.failed:
            text += f"; {len(self.failed)} not delivered (retried next run)"
        return text


def track_alerts(
    warehouse: Path | str,
    db: Path | str,
    alerts: pa.Table,
    change_points: pa.Table,
    run_id: str,
    *,
    now: datetime | None = None,
) -> pa.Table:
    """Merge this run's `alerts` into the saved state; write it as `marts.alerts` in `db`."""
    now = now or datetime.now(UTC)
    state = track(load_state(warehouse), alerts, change_points, run_id=run_id, now=now)
    con = duckdb.connect(str(db))
    try:
        con.execute("set enable_progress_bar = false")  # no bar amid the run's step lines
        con.register("_th_alert_state", state)
        con.execute("create schema if not exists marts")
        con.execute("create or replace table marts.alerts as select * from _th_alert_state")
        con.unregister("_th_alert_state")
    finally:
        con.close()
    return state


def _log(warehouse: Path, run_id: str, alert_id: str, d: Delivery, *, event: str,
         at: datetime) -> None:
    path = warehouse / DELIVERY_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"at": at.isoformat(), "run_id": run_id, "alert_id": alert_id, "event": event,
              "destination": d.destination, "ok": d.ok, "attempts": d.attempts,
              "status": d.status, "error": d.error, "seconds": round(d.seconds, 3)}
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def notify(
    warehouse: Path | str,
    state: pa.Table,
    run_id: str,
    *,
    destinations: Sequence[Destination] | None = None,
    now: datetime | None = None,
) -> NotifyResult:
    """Send every due alert of `state`; save the state with what was delivered."""
    warehouse = Path(warehouse)
    now = now or datetime.now(UTC)
    dests = list(destinations_from_env() if destinations is None else destinations)
    result = NotifyResult(destinations=[d.name for d in dests])
    due = sorted((r for r in state.to_pylist() if is_due(r)),
                 key=lambda r: (SEVERITY_RANK.get(r["severity"], 99), r["change_at"]))
    result.due = len(due)
    broken: set[str] = set()
    for row in due if dests else []:
        event = "raised" if row["notified_severity"] is None else "escalated"
        payload = alert_payload(row, event)
        ok = True
        for dest in dests:
            if dest.name in broken:
                ok = False
                continue
            delivery = dest.send(payload)
            result.deliveries.append((row["alert_id"], delivery))
            _log(warehouse, run_id, row["alert_id"], delivery, event=event, at=now)
            if not delivery.ok:
                ok = False
                broken.add(dest.name)
        (result.sent if ok else result.failed).append(row["alert_id"])
    save_state(warehouse, mark_notified(state, set(result.sent), now))
    return result


def send_test_alert(destinations: Sequence[Destination] | None = None) -> list[Delivery]:
    """Send one clearly marked test alert to every configured destination."""
    now = datetime.now(UTC)
    row = {
        "alert_id": "test", "severity": "info", "rule": "test_alert", "metric": "request_count",
        "grain": "day", "segment_key": "all", "change_at": now, "value_before": 1.0,
        "value_after": 1.0, "relative_change": 0.0, "traffic_share": 1.0,
        "suspected_causes": [], "status": "open", "first_raised_at": now, "run_id": "test",
        "message": "tracehouse test alert: this destination is configured correctly",
    }
    dests = list(destinations_from_env() if destinations is None else destinations)
    return [d.send(alert_payload(row, "test")) for d in dests]
