"""Alerts that reach people: state across runs, delivery to local HTTP receivers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from tracehouse.alerting import (
    WebhookDestination,
    destinations_from_env,
    load_state,
    notify,
    slack_message,
    track,
)
from tracehouse.alerting.state import ALERT_STATE_SCHEMA
from tracehouse.contract.schemas import CHANGE_POINTS_SCHEMA
from tracehouse.detect.alerts import alerts_table, find_alerts
from tracehouse.detect.changes import Change

T0 = datetime(2026, 1, 10, tzinfo=UTC)
SECRET_PATH = "/hooks/T0SECRET/B0TOKEN-do-not-log"


@dataclass
class Receiver:
    """A local HTTP endpoint that records bodies and answers per `mode`."""

    mode: str = "ok"  # ok | fail | hang
    bodies: list[dict[str, object]] = field(default_factory=list)
    hits: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec.hits += 1
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if rec.mode == "hang":
                time.sleep(1.5)
                return
            if rec.mode == "fail":
                self.send_response(500)
                self.end_headers()
                return
            rec.bodies.append(json.loads(body))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.server.daemon_threads = True
    thread = threading.Thread(target=rec.server.serve_forever, daemon=True)
    thread.start()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


def change(metric: str, at: datetime, before: float, after: float,
           segment: str = "all") -> Change:
    return Change(metric=metric, grain="day", segment_key=segment, change_at=at,
                  value_before=before, value_after=after, score=10.0, share=1.0,
                  suspected_causes=["validator_version=cite-v4 first seen 2026-01-10T09:00Z"])


def raised(*changes: Change, run_id: str = "r") -> pa.Table:
    return alerts_table(find_alerts(list(changes)), run_id)


def cps(*changes: Change) -> pa.Table:
    rows = [c.as_row("pelt", "r") for c in changes]
    return pa.Table.from_pylist(rows, schema=CHANGE_POINTS_SCHEMA)


def run_track(known: pa.Table, *changes: Change, run: str, now: datetime) -> pa.Table:
    return track(known, raised(*changes, run_id=run), cps(*changes), run_id=run, now=now)


def test_same_change_in_later_runs_is_one_alert_and_escalation_is_due_again() -> None:
    citation = change("citation_mismatch_rate", T0, 0.02, 0.025)  # +25%: warning
    s1 = run_track(ALERT_STATE_SCHEMA.empty_table(), citation, run="r1", now=T0)
    assert s1.num_rows == 1
    first = s1.to_pylist()[0]
    assert (first["status"], first["severity"], first["first_run_id"]) == ("open", "warning", "r1")
    # The next run finds the same change a day later (more data moved the estimate) and bigger.
    bigger = change("citation_mismatch_rate", T0 + timedelta(days=1), 0.02, 0.05)  # critical
    s2 = run_track(s1, bigger, run="r2", now=T0 + timedelta(hours=1))
    row = s2.to_pylist()[0]
    assert s2.num_rows == 1
    assert row["alert_id"] == first["alert_id"]
    assert row["first_raised_at"] == T0 and row["last_seen_at"] == T0 + timedelta(hours=1)
    assert (row["severity"], row["run_id"]) == ("critical", "r2")
    # A change three days away in the same series is another change.
    later = change("citation_mismatch_rate", T0 + timedelta(days=5), 0.02, 0.05)
    s3 = run_track(s2, bigger, later, run="r3", now=T0 + timedelta(hours=2))
    assert s3.num_rows == 2


def test_alert_resolves_when_the_series_recovers_or_the_change_is_withdrawn() -> None:
    up = change("citation_mismatch_rate", T0, 0.02, 0.05)
    tool = change("required_tool_missing_rate", T0, 0.1, 0.2)
    s1 = run_track(ALERT_STATE_SCHEMA.empty_table(), up, tool, run="r1", now=T0)
    assert sorted(s1.column("status").to_pylist()) == ["open", "open"]
    # Run 2: citation mismatch comes back down (most of the move), the tool change is gone.
    back = change("citation_mismatch_rate", T0 + timedelta(days=4), 0.05, 0.025)
    later = T0 + timedelta(days=5)
    s2 = track(s1, raised(up, back), cps(up, back), run_id="r2", now=later)
    by_metric = {r["metric"]: r for r in s2.to_pylist()}
    assert by_metric["required_tool_missing_rate"]["status"] == "resolved"
    assert by_metric["required_tool_missing_rate"]["resolution"] == "withdrawn"
    # The citation alert is still raised (the first change is still detected): open.
    assert by_metric["citation_mismatch_rate"]["status"] == "open"
    s3 = track(s2, raised(), cps(up, back), run_id="r3", now=later)
    cit = next(r for r in s3.to_pylist() if r["metric"] == "citation_mismatch_rate")
    assert (cit["status"], cit["resolution"], cit["resolved_at"]) == ("resolved", "recovered",
                                                                      later)
    # Resolved alerts stay in the history, unchanged by later runs.
    s4 = track(s3, raised(), cps(), run_id="r4", now=later + timedelta(days=1))
    assert s4.to_pylist() == s3.to_pylist()


def test_each_alert_is_posted_once_per_change_and_again_when_it_escalates(
    tmp_path: Path, receiver: Receiver
) -> None:
    dest = WebhookDestination("TRACEHOUSE_ALERT_WEBHOOK_URL", receiver.url, timeout=2)
    s1 = run_track(ALERT_STATE_SCHEMA.empty_table(),
                   change("citation_mismatch_rate", T0, 0.02, 0.025),
                   change("required_tool_missing_rate", T0, 0.1, 0.2), run="r1", now=T0)
    res = notify(tmp_path, s1, "r1", destinations=[dest], now=T0)
    assert (res.due, len(res.sent), res.failed) == (2, 2, [])
    assert len(receiver.bodies) == 2
    body = receiver.bodies[0]
    for key in ("alert_id", "severity", "metric", "segment_key", "change_at", "value_before",
                "value_after", "suspected_causes"):
        assert key in body, key
    assert body["event"] == "raised"
    assert {b["metric"] for b in receiver.bodies} == {"citation_mismatch_rate",
                                                      "required_tool_missing_rate"}
    cit = next(b for b in receiver.bodies if b["metric"] == "citation_mismatch_rate")
    assert (cit["value_before"], cit["value_after"]) == (0.02, 0.025)
    assert cit["suspected_causes"] == ["validator_version=cite-v4 first seen 2026-01-10T09:00Z"]
    assert cit["change_at"] == "2026-01-10T00:00:00Z"

    # The next run sees the same changes: nothing is sent again.
    saved = load_state(tmp_path)
    s2 = run_track(saved, change("citation_mismatch_rate", T0, 0.02, 0.025),
                   change("required_tool_missing_rate", T0, 0.1, 0.2), run="r2", now=T0)
    res2 = notify(tmp_path, s2, "r2", destinations=[dest], now=T0)
    assert (res2.due, len(receiver.bodies)) == (0, 2)

    # The citation change grows from warning to critical: it is sent again, once.
    s3 = run_track(load_state(tmp_path), change("citation_mismatch_rate", T0, 0.02, 0.05),
                   change("required_tool_missing_rate", T0, 0.1, 0.2), run="r3", now=T0)
    res3 = notify(tmp_path, s3, "r3", destinations=[dest], now=T0)
    assert res3.due == 1 and len(receiver.bodies) == 3
    assert (receiver.bodies[2]["event"], receiver.bodies[2]["severity"]) == ("escalated",
                                                                             "critical")
    lines = (tmp_path / "state" / "deliveries.jsonl").read_text().splitlines()
    log = [json.loads(x) for x in lines]
    assert len(log) == 3 and all(r["ok"] for r in log)


def test_a_failing_receiver_is_retried_never_fails_the_run_and_is_sent_later(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.mode = "fail"
    dest = WebhookDestination("TRACEHOUSE_ALERT_WEBHOOK_URL", receiver.url, timeout=2,
                              attempts=3, sleep=lambda s: None)
    s1 = run_track(ALERT_STATE_SCHEMA.empty_table(),
                   change("citation_mismatch_rate", T0, 0.02, 0.05),
                   change("required_tool_missing_rate", T0, 0.1, 0.2), run="r1", now=T0)
    res = notify(tmp_path, s1, "r1", destinations=[dest], now=T0)
    # Three attempts on the first alert, then the destination is skipped for this run.
    assert receiver.hits == 3
    assert (len(res.sent), len(res.failed)) == (0, 2)
    assert res.deliveries[0][1].status == 500 and res.deliveries[0][1].attempts == 3
    assert "not delivered" in res.summary()
    # Nothing was marked sent: the next run, with the receiver back, delivers both.
    receiver.mode = "ok"
    res2 = notify(tmp_path, load_state(tmp_path), "r2", destinations=[dest], now=T0)
    assert (len(res2.sent), len(receiver.bodies)) == (2, 2)


def test_a_hanging_receiver_costs_bounded_time_and_urls_are_never_logged(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.mode = "hang"
    dest = WebhookDestination("TRACEHOUSE_SLACK_WEBHOOK_URL", receiver.url,
                              render=slack_message, timeout=0.3, attempts=2,
                              sleep=lambda s: None)
    changes = [change("citation_mismatch_rate", T0, 0.02, 0.05),
               change("required_tool_missing_rate", T0, 0.1, 0.2),
               change("required_tool_missing_rate", T0, 0.1, 0.2, "route_name=cheap")]
    state = run_track(ALERT_STATE_SCHEMA.empty_table(), *changes, run="r1", now=T0)
    started = time.perf_counter()
    res = notify(tmp_path, state, "r1", destinations=[dest], now=T0)
    elapsed = time.perf_counter() - started
    assert receiver.hits == 2  # two attempts on the first alert, none on the other two
    assert len(res.failed) == 3 and elapsed < 5
    assert "timed out" in (res.deliveries[0][1].error or "")
    written = (tmp_path / "state" / "deliveries.jsonl").read_text()
    said = res.summary() + written + capsys.readouterr().out + "".join(
        str(d) for _, d in res.deliveries)
    assert "T0SECRET" not in said and "127.0.0.1" not in said
    assert "TRACEHOUSE_SLACK_WEBHOOK_URL" in res.summary()


def test_destinations_come_from_the_environment_and_slack_gets_its_shape() -> None:
    env = {"TRACEHOUSE_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/a",
           "TRACEHOUSE_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/s",
           "TRACEHOUSE_ALERT_TIMEOUT_S": "1.5", "TRACEHOUSE_ALERT_RETRIES": "4"}
    dests = destinations_from_env(env)
    assert [d.name for d in dests] == ["TRACEHOUSE_ALERT_WEBHOOK_URL",
                                       "TRACEHOUSE_SLACK_WEBHOOK_URL"]
    assert all(isinstance(d, WebhookDestination) and d.timeout == 1.5 and d.attempts == 4
               for d in dests)
    assert destinations_from_env({}) == []
    body = slack_message({"severity": "critical", "rule": "citation_mismatch_rising",
                          "message": "Citation mismatch rising", "alert_id": "abc",
                          "suspected_causes": ["validator_version=cite-v4"], "event": "raised"})
    assert set(body) == {"text", "blocks"}
    assert "cite-v4" in str(body["text"]) and "CRITICAL" in str(body["text"])


def test_pipeline_steps_track_publish_and_deliver_alerts_once(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from tests.detect_synthetic import Shift, dim_versions, metric_daily
    from tracehouse.pipeline import step_detect, step_notify
    from tracehouse.publish import publish

    day = timedelta(days=1)
    table = metric_daily(days=42, traffic=2000.0, seed=21, shifts=(
        Shift("required_tool_missing_rate", 20, 27, 0.2, route="standard"),
        Shift("citation_mismatch_rate", 12, 42, 0.08)))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    versions = dim_versions([
        ("route_policy_version", "rp-v6", "all", start + 19 * day + timedelta(hours=15)),
        ("validator_version", "cite-v4", "validator_name=citation_check",
         start + 11 * day + timedelta(hours=10)),
    ])
    wh = tmp_path / "warehouse"
    wh.mkdir()
    con = duckdb.connect(str(wh / "tracehouse.duckdb"))
    con.execute("create schema marts")
    con.register("md", table)
    con.execute("create table marts.metric_daily as select * from md")
    con.register("dv", pa.Table.from_pylist(versions))
    con.execute("create table marts.dim_versions as select * from dv")
    con.close()
    monkeypatch.setenv("TRACEHOUSE_ALERT_WEBHOOK_URL", receiver.url)

    for run_id in ("run-1", "run-2"):
        lines: list[str] = []
        state: list[pa.Table] = []
        step_detect(wh, run_id, lines, state)
        publish(wh, run_id)
        summary = step_notify(wh, run_id, state)
        assert receiver.url not in summary
        published = duckdb.sql(
            f"select * from read_parquet('{wh / 'marts' / 'alerts.parquet'}')").to_arrow_table()
        assert published.schema.names == ALERT_STATE_SCHEMA.names
        assert set(published.column("status").to_pylist()) == {"open"}
        assert set(published.column("first_run_id").to_pylist()) == {"run-1"}
    rules = sorted(b["rule"] for b in receiver.bodies)  # type: ignore[type-var]
    assert rules == ["citation_mismatch_rising", "no_tool_for_required"]


def test_cli_sends_a_test_alert_and_lists_state(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tracehouse.alerting import save_state
    from tracehouse.cli import app

    runner = CliRunner()
    monkeypatch.delenv("TRACEHOUSE_ALERT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("TRACEHOUSE_SLACK_WEBHOOK_URL", raising=False)
    none = runner.invoke(app, ["alerts", "test"])
    assert none.exit_code == 1 and "no destination configured" in none.output
    monkeypatch.setenv("TRACEHOUSE_SLACK_WEBHOOK_URL", receiver.url)
    ok = runner.invoke(app, ["alerts", "test"])
    assert ok.exit_code == 0, ok.output
    assert "TRACEHOUSE_SLACK_WEBHOOK_URL: delivered (HTTP 200)" in ok.output
    assert "T0SECRET" not in ok.output
    assert "test alert" in str(receiver.bodies[0]["text"])
    receiver.mode = "fail"
    monkeypatch.setenv("TRACEHOUSE_ALERT_RETRIES", "1")
    bad = runner.invoke(app, ["alerts", "test"])
    assert bad.exit_code == 1 and "FAILED after 1 attempt(s): HTTP 500" in bad.output

    state = run_track(ALERT_STATE_SCHEMA.empty_table(),
                      change("citation_mismatch_rate", T0, 0.02, 0.05), run="r1", now=T0)
    save_state(tmp_path, state)
    listed = runner.invoke(app, ["alerts", "list", "--warehouse", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "CRITICAL" in listed.output and "not sent" in listed.output
    assert "Citation mismatch rising" in listed.output
    resolved = runner.invoke(app, ["alerts", "list", "--warehouse", str(tmp_path),
                                   "--status", "resolved"])
    assert "no resolved alerts" in resolved.output
