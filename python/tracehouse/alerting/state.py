"""Alert state across runs: one row per change, from first raised to resolved.

Detection runs over the whole history every time, so the same change is found again by every
run. `track` matches this run's alerts to the alerts already known and returns the new state:

* an alert of the same `rule`, `metric`, `grain` and `segment_key` whose `change_at` is within
  `MATCH_WINDOW` of a known open alert is the same change: it keeps its `alert_id` and
  `first_raised_at`, and takes this run's values, severity and `last_seen_at`;
* a new change gets `status = open`, `first_raised_at = last_seen_at = now`;
* a known open alert that this run did not raise again is resolved: `recovered` when the same
  series has a later change in the opposite direction that takes back at least half of the move,
  else `withdrawn` (the detector no longer sees the change, e.g. it was a short blip);
* resolved alerts are kept as they are (history).

Delivery bookkeeping lives in the same rows: `notified_severity` / `notified_at` are set by
`tracehouse.alerting.notify` when every configured destination took the alert. An alert is due
when it is open and has not been sent, or when its severity is now higher than what was sent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracehouse.contract.schemas import TIMESTAMP
from tracehouse.detect.alerts import ALERTS_SCHEMA, SEVERITIES

SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
#: How far `change_at` may move between runs and still be the same change, per grain.
MATCH_WINDOW = {"day": timedelta(days=2), "hour": timedelta(hours=6)}
#: A later opposite change resolves an alert when it takes back at least this share of the move.
RECOVERY_SHARE = 0.5

#: The detector's alert columns (without `run_id`), then the lifecycle and delivery columns.
ALERT_STATE_SCHEMA = pa.schema(
    [
        ALERTS_SCHEMA.field("alert_id").with_nullable(False),
        *(f for f in ALERTS_SCHEMA if f.name not in ("alert_id", "run_id")),
        pa.field("status", pa.string()),
        pa.field("resolution", pa.string()),
        pa.field("first_raised_at", TIMESTAMP),
        pa.field("last_seen_at", TIMESTAMP),
        pa.field("resolved_at", TIMESTAMP),
        pa.field("first_run_id", pa.string()),
        ALERTS_SCHEMA.field("run_id"),
        pa.field("notified_severity", pa.string()),
        pa.field("notified_at", TIMESTAMP),
    ]
)
STATE_FILE = Path("state") / "alerts.parquet"

Row = dict[str, object]


def state_path(warehouse: Path | str) -> Path:
    """Return where the alert state of a warehouse is kept (`W/state/alerts.parquet`)."""
    return Path(warehouse) / STATE_FILE


def load_state(warehouse: Path | str) -> pa.Table:
    """Return the saved alert state, or an empty table on the first run."""
    path = state_path(warehouse)
    if not path.is_file():
        return ALERT_STATE_SCHEMA.empty_table()
    table = pq.read_table(path)
    return table.select(ALERT_STATE_SCHEMA.names).cast(ALERT_STATE_SCHEMA)


def save_state(warehouse: Path | str, state: pa.Table) -> Path:
    """Write the alert state atomically (temp file, fsync, rename); return its path."""
    path = state_path(warehouse)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(state.cast(ALERT_STATE_SCHEMA), tmp)
    with tmp.open("rb") as handle:
        import os

        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def _same_change(known: Row, alert: Row) -> bool:
    keys = ("rule", "metric", "grain", "segment_key")
    if any(known[k] != alert[k] for k in keys):
        return False
    window = MATCH_WINDOW.get(str(alert["grain"]), MATCH_WINDOW["day"])
    a, b = known["change_at"], alert["change_at"]
    assert isinstance(a, datetime) and isinstance(b, datetime)
    return abs(a - b) <= window


def _num(value: object) -> float:
    """A float, NaN for a missing value (0.0 stays 0.0)."""
    return float(value) if isinstance(value, int | float) else math.nan


def _recovered(alert: Row, change_points: Iterable[Row]) -> bool:
    """True if a later change in the same series takes back at least half of the move."""
    move = _num(alert["value_after"]) - _num(alert["value_before"])
    if not (math.isfinite(move) and move):
        return False
    for cp in change_points:
        if (cp["metric"], cp["grain"], cp["segment_key"]) != (
            alert["metric"], alert["grain"], alert["segment_key"]
        ):
            continue
        at, since = cp["change_at"], alert["change_at"]
        assert isinstance(at, datetime) and isinstance(since, datetime)
        if at <= since:
            continue
        back = _num(cp["value_before"]) - _num(cp["value_after"])
        if back * move > 0 and abs(back) >= RECOVERY_SHARE * abs(move):
            return True
    return False


def track(
    known: pa.Table,
    raised: pa.Table,
    change_points: pa.Table,
    *,
    run_id: str,
    now: datetime,
) -> pa.Table:
    """Return the new alert state from the known state and this run's raised alerts.

    `raised` has the `alerts` columns of :mod:`tracehouse.detect.alerts` (one row per alert of
    this run); `change_points` is this run's `change_points` mart (for recoveries). Alerts are
    few (tens to hundreds), so this matches them in Python; no event data passes through here.
    """
    state = [dict(r) for r in known.to_pylist()]
    cps = change_points.to_pylist()
    seen: set[int] = set()
    for alert in raised.to_pylist():
        match = next(
            (i for i, k in enumerate(state)
             if i not in seen and k["status"] == "open" and _same_change(k, alert)),
            None,
        )
        fields = {name: alert.get(name) for name in ALERT_STATE_SCHEMA.names if name in alert}
        fields.update(run_id=run_id, last_seen_at=now, status="open", resolution=None,
                      resolved_at=None)
        if match is None:
            fields.update(first_raised_at=now, first_run_id=run_id, notified_severity=None,
                          notified_at=None)
            state.append(fields)
            seen.add(len(state) - 1)
        else:
            fields.pop("alert_id", None)
            state[match].update(fields)
            seen.add(match)
    for i, k in enumerate(state):
        if i in seen or k["status"] != "open":
            continue
        k.update(
            status="resolved",
            resolution="recovered" if _recovered(k, cps) else "withdrawn",
            resolved_at=now,
        )
    rows = [{name: r.get(name) for name in ALERT_STATE_SCHEMA.names} for r in state]
    return pa.Table.from_pylist(rows, schema=ALERT_STATE_SCHEMA)


def is_due(row: Row) -> bool:
    """True if an alert must be sent: open, and never sent or now more severe than sent."""
    if row["status"] != "open":
        return False
    sent = row.get("notified_severity")
    if sent is None:
        return True
    return SEVERITY_RANK.get(str(row["severity"]), 99) < SEVERITY_RANK.get(str(sent), 99)


def mark_notified(state: pa.Table, alert_ids: set[str], now: datetime) -> pa.Table:
    """Return the state with the given alerts marked as sent at their current severity."""
    rows = state.to_pylist()
    for r in rows:
        if r["alert_id"] in alert_ids:
            r["notified_severity"] = r["severity"]
            r["notified_at"] = now
    return pa.Table.from_pylist(rows, schema=ALERT_STATE_SCHEMA)
