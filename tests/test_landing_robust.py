"""No row can stop the writer (issue 14.1): implausible times, mixed types, a batch that never
writes, the truth at shutdown, and the spool in `lake status`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from tracehouse.cli import app
from tracehouse.lake import lake_status, spool_status, write_batch
from tracehouse.otlp import decode_file_bytes, spans_to_table
from tracehouse.otlp.ingest import ingest_otlp_files
from tracehouse.otlp.rows import parse_rows, rows_to_table
from tracehouse.redaction import Redactor
from tracehouse.spool import LakeWriter

from .test_contract import good_span, spans_table

FIXTURES = Path(__file__).parent / "fixtures" / "otlp"
KEY = b"robust-test-key-0123456789abcdef"
NOW = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
YEAR_2500_NS = 16_725_225_600_000_000_000  # startTimeUnixNano from the issue


def _genai_doc() -> dict[str, Any]:
    return json.loads((FIXTURES / "genai.jsonl").read_text().splitlines()[0])


def _far_future_spans_file(tmp_path: Path) -> Path:
    """The genai fixture's first request with its first span moved to the year ~2500."""
    doc = _genai_doc()
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["startTimeUnixNano"] = str(YEAR_2500_NS)
    span["endTimeUnixNano"] = str(YEAR_2500_NS + 1_000_000)
    path = tmp_path / "far.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    return path


def _feedback(event_time: str, value: Any, fid: str) -> pa.Table:
    row = {"schema_version": "1", "feedback_id": fid, "event_time": event_time,
           "trace_id": "5b8efff798038103d269b633813fc60c", "tenant_id": "acme",
           "feedback_type": "thumbs_up", "value": value}
    return rows_to_table("feedback", parse_rows(json.dumps([row]).encode()),
                         Redactor(KEY)).table


def _wait_landed(writer: LakeWriter, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while writer.buffered_rows and time.monotonic() < deadline:
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------
# implausible timestamps are quarantined, never passed to the day split
# --------------------------------------------------------------------------------------------


def test_span_in_the_year_2500_is_quarantined_and_the_rest_lands(tmp_path: Path) -> None:
    rows = [good_span(span_id="a" * 16),
            good_span(span_id="b" * 16,
                      event_time=datetime(2500, 1, 1, tzinfo=UTC),
                      end_time=datetime(2500, 1, 1, 0, 0, 1, tzinfo=UTC))]
    report = write_batch(tmp_path, "spans", spans_table(rows), source="t", batch_id="b1",
                         ingest_time=NOW)
    assert (report.accepted, report.quarantined) == (1, 1)
    (reason,) = report.reject_reasons
    assert "event_time outside the plausible window" in reason
    # quarantined under the landing day, not under a dt in the year 2500
    q = pq.read_table(tmp_path / "_quarantine/spans/dt=2026-03-05/b1.parquet")
    assert q.column("span_id").to_pylist() == ["b" * 16]
    assert all(r["reconciled"] for r in lake_status(tmp_path).to_pylist())


def test_times_before_2000_and_beyond_a_week_ahead_are_implausible(tmp_path: Path) -> None:
    rows = [good_span(span_id="c" * 16, event_time=datetime(1999, 12, 31, tzinfo=UTC),
                      end_time=datetime(1999, 12, 31, 0, 0, 1, tzinfo=UTC)),
            good_span(span_id="d" * 16, event_time=datetime(2026, 3, 13, tzinfo=UTC),
                      end_time=datetime(2026, 3, 13, 0, 0, 1, tzinfo=UTC)),
            good_span(span_id="e" * 16, event_time=datetime(2026, 3, 11, tzinfo=UTC),
                      end_time=datetime(2026, 3, 11, 0, 0, 1, tzinfo=UTC))]
    report = write_batch(tmp_path, "spans", spans_table(rows), source="t", ingest_time=NOW)
    assert (report.accepted, report.quarantined) == (1, 2)


def test_feedback_in_the_year_2300_is_quarantined(tmp_path: Path) -> None:
    table = _feedback("2300-01-01T00:00:00Z", 1.0, "fb-future")
    report = write_batch(tmp_path, "feedback", table, source="t", ingest_time=NOW)
    assert (report.accepted, report.quarantined) == (0, 1)
    assert any("event_time outside the plausible window" in r for r in report.reject_reasons)
    assert not list(tmp_path.glob("_quarantine/feedback/dt=2300-*"))


def test_ingest_otlp_lands_the_plausible_spans_of_a_file_with_a_year_2500_span(
    tmp_path: Path,
) -> None:
    (report,) = ingest_otlp_files(tmp_path / "lake", [_far_future_spans_file(tmp_path)],
                                  Redactor(KEY))
    assert report.quarantined == 1 and report.accepted == report.received - 1 > 0


# --------------------------------------------------------------------------------------------
# the server's writer: nothing stalls it
# --------------------------------------------------------------------------------------------


def test_writer_lands_everything_after_a_year_2500_span(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    far = spans_to_table(decode_file_bytes(_far_future_spans_file(tmp_path).read_bytes()),
                         Redactor(KEY))
    writer = LakeWriter(lake, spool_dir=lake / "_spool", flush_seconds=0.01)
    writer.start()
    writer.submit("spans", far, source="otlp-http")
    writer.submit("feedback", _feedback("2026-03-04T10:00:00Z", 1.0, "fb-1"), source="http-json")
    _wait_landed(writer)
    shutdown = writer.close()
    assert shutdown.unlanded_rows == 0 and shutdown.exit_code == 0
    rows = lake_status(lake).to_pylist()
    assert sum(r["received"] for r in rows) == far.num_rows + 1
    assert sum(r["quarantined"] for r in rows) == 1
    assert not list((lake / "_spool").glob("*.arrow"))


def test_mixed_value_types_in_one_flush_are_cast_to_the_contract(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    writer = LakeWriter(lake, spool_dir=lake / "_spool", flush_seconds=0.5)
    writer.start()
    writer.submit("feedback", _feedback("2026-03-04T10:00:00Z", 1.0, "fb-1"), source="http-json")
    writer.submit("feedback", _feedback("2026-03-04T10:00:01Z", "4", "fb-2"), source="http-json")
    writer.submit("feedback", _feedback("2026-03-04T10:00:02Z", "abc", "fb-3"),
                  source="http-json")
    _wait_landed(writer)
    assert writer.close().unlanded_rows == 0
    landed = pq.read_table(lake / "feedback").to_pylist()
    assert sorted((r["feedback_id"], r["value"]) for r in landed) == [("fb-1", 1.0),
                                                                     ("fb-2", 4.0)]
    q = pq.read_table(lake / "_quarantine" / "feedback").to_pylist()
    assert [(r["feedback_id"], r["reject_reason"]) for r in q] == [
        ("fb-3", "uncastable value: not double")]


def test_a_batch_that_never_writes_is_quarantined_whole_after_bounded_retries(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    calls = {"spans": 0}

    def broken_for_spans(lake_: Path, dataset: str, table: pa.Table, **kw: Any):
        if dataset == "spans":
            calls["spans"] += 1
            raise RuntimeError("writer bug")
        return write_batch(lake_, dataset, table, **kw)

    spans = spans_to_table(decode_file_bytes((FIXTURES / "genai.jsonl").read_bytes()),
                           Redactor(KEY))
    writer = LakeWriter(lake, spool_dir=lake / "_spool", flush_seconds=0.01,
                        write=broken_for_spans, max_attempts=3, retry_base_seconds=0.01)
    writer.start()
    writer.submit("spans", spans, source="otlp-http")
    writer.submit("feedback", _feedback("2026-03-04T10:00:00Z", 1.0, "fb-1"), source="http-json")
    _wait_landed(writer)
    shutdown = writer.close()
    assert calls["spans"] == 3  # bounded: not retried forever
    assert shutdown.quarantined_rows == spans.num_rows and shutdown.unlanded_rows == 0
    q = pq.read_table(lake / "_quarantine" / "spans")
    assert q.num_rows == spans.num_rows
    assert set(q.column("reject_reason").to_pylist()) == {
        "batch failed to write 3 times: RuntimeError: writer bug"}
    rows = lake_status(lake).to_pylist()
    assert all(r["reconciled"] for r in rows)
    assert sum(r["accepted"] for r in rows) == 1  # the feedback row was never blocked
    assert not list((lake / "_spool").glob("*.arrow"))


def test_shutdown_reports_rows_left_in_the_spool(tmp_path: Path) -> None:
    lake = tmp_path / "lake"

    def always_fails(*args: Any, **kwargs: Any):
        raise OSError("disk gone")

    writer = LakeWriter(lake, spool_dir=lake / "_spool", flush_seconds=0.01,
                        write=always_fails, quarantine=always_fails, max_attempts=2,
                        retry_base_seconds=0.01)
    writer.start()
    writer.submit("feedback", _feedback("2026-03-04T10:00:00Z", 1.0, "fb-1"), source="http-json")
    shutdown = writer.close(timeout=10)
    assert shutdown.unlanded_rows == 1 and shutdown.exit_code != 0
    assert "1 acknowledged row" in shutdown.message
    assert len(list((lake / "_spool").glob("*.arrow"))) == 1


# --------------------------------------------------------------------------------------------
# lake status counts the spool
# --------------------------------------------------------------------------------------------


def test_lake_status_counts_the_spool_and_does_not_say_reconciled(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    write_batch(lake, "spans", spans_table([good_span()]), source="t", ingest_time=NOW)
    dead = LakeWriter(lake, spool_dir=lake / "_spool")
    (lake / "_spool").mkdir()
    dead.submit("feedback", _feedback("2026-03-04T10:00:00Z", 1.0, "fb-1"), source="http-json")
    status = spool_status(lake).to_pylist()
    assert [(r["dataset"], r["source"], r["rows"], r["files"]) for r in status] == [
        ("feedback", "http-json", 1, 1)]
    result = CliRunner().invoke(app, ["lake", "status", "--lake", str(lake),
                                      "--spool-grace-seconds", "0"])
    assert result.exit_code == 1, result.output
    assert "1 row(s) acknowledged but not yet in the lake" in result.output
    assert "NOT reconciled" in result.output


def test_receiver_over_http_lands_everything_after_the_rows_that_used_to_stall_it(
    tmp_path: Path,
) -> None:
    from tracehouse.server import Receiver, ServerConfig

    from .test_server import _post

    config = ServerConfig(lake=tmp_path / "lake", port=0, flush_seconds=0.2)
    receiver = Receiver(config, Redactor(KEY))
    receiver.start()
    base = f"http://127.0.0.1:{receiver.port}"
    try:
        far = _far_future_spans_file(tmp_path).read_bytes()
        assert _post(f"{base}/v1/traces", far, "application/json")[0] == 200
        for fid, value in (("fb-1", 1.0), ("fb-2", "4")):
            row = {"schema_version": "1", "feedback_id": fid,
                   "event_time": "2026-03-04T10:00:00Z",
                   "trace_id": "5b8efff798038103d269b633813fc60c", "tenant_id": "acme",
                   "feedback_type": "thumbs_up", "value": value}
            assert _post(f"{base}/v1/feedback", json.dumps([row]).encode(),
                         "application/json")[0] == 200
        normal = (FIXTURES / "openinference.jsonl").read_bytes()
        assert _post(f"{base}/v1/traces", normal, "application/json")[0] == 200
    finally:
        report = receiver.stop()
    assert report.exit_code == 0 and report.unlanded_rows == 0
    rows = lake_status(config.lake).to_pylist()
    assert all(r["reconciled"] for r in rows)
    by_dataset: dict[str, int] = {}
    for r in rows:
        by_dataset[r["dataset"]] = by_dataset.get(r["dataset"], 0) + r["accepted"]
    assert by_dataset["feedback"] == 2 and by_dataset["spans"] >= 7
    assert not list((config.lake / "_spool").glob("*.arrow"))


def test_absurd_token_counts_and_times_never_crash_the_mapping(tmp_path: Path) -> None:
    t0 = 1_772_614_800_000_000_000
    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [
        {"traceId": "11" * 16, "spanId": "22" * 8, "name": "chat", "kind": 1,
         "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + 10**9),
         "attributes": [
             {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
             {"key": "gen_ai.usage.input_tokens", "value": {"stringValue": "1" + "0" * 30}},
             {"key": "gen_ai.usage.output_tokens", "value": {"doubleValue": 1e30}}]},
        {"traceId": "11" * 16, "spanId": "33" * 8, "name": "far", "kind": 1,
         "startTimeUnixNano": str(2**64 - 1), "endTimeUnixNano": str(2**64 - 1),
         "attributes": []},
    ]}]}]}
    table = spans_to_table(decode_file_bytes(json.dumps(doc).encode()), Redactor(KEY))
    rows = {r["span_id"]: r for r in table.to_pylist()}
    assert rows["22" * 8]["input_tokens"] is None and rows["22" * 8]["output_tokens"] is None
    report = write_batch(tmp_path, "spans", table, source="t", ingest_time=NOW)
    assert (report.accepted, report.quarantined) == (1, 1)


def test_serve_exits_non_zero_when_acknowledged_rows_are_not_in_the_lake(
    tmp_path: Path, caplog: Any,
) -> None:
    import signal

    from tracehouse.server import Receiver, ServerConfig, serve

    def broken(*args: Any, **kwargs: Any):
        raise OSError("lake volume unmounted")

    def ready(receiver: Receiver) -> None:
        receiver.writer._write = broken
        receiver.writer._quarantine = broken
        receiver.writer.retry_base_seconds = 0.01
        receiver.writer.submit("feedback", _feedback("2026-03-04T10:00:00Z", 1.0, "fb-1"),
                               source="http-json")  # acknowledged
        signal.raise_signal(signal.SIGTERM)

    lake = tmp_path / "lake"
    code = serve(ServerConfig(lake=lake, port=0, flush_seconds=0.01), Redactor(KEY), ready=ready)
    assert code == 1
    assert "1 acknowledged row(s) are NOT in the lake" in caplog.text
    assert len(list((lake / "_spool").glob("*.arrow"))) == 1  # replayed at the next start
