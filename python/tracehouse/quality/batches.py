"""Batch-level expectations over the lake's newly landed batches (policy: warn, never fail).

The lake writer already enforces the contract row by row (rows that break it are quarantined).
What it cannot see is a batch that is valid row by row but suspicious as a whole: a sudden share
of errors, keys that went missing, durations or token counts out of any plausible range, many
late or duplicated rows. For each dataset this module computes one row of statistics per new
batch in DuckDB (fast, whatever the batch size) and validates that frame with a GX suite; a
failing expectation names the batches that broke it.

Which batches are new is kept in the warehouse database, table ``quality.checked_batches``
(not published): every ledger entry not in it yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from tracehouse.compaction import COMPACTED_PREFIX
from tracehouse.lake import LEDGER_DIR
from tracehouse.quality.engine import WARN, Check, GxSession, SuiteResult

STATE_SCHEMA = "quality"
STATE_TABLE = f"{STATE_SCHEMA}.checked_batches"

# Thresholds of suspicion. A batch outside them is worth a look, not a reason to stop.
MAX_QUARANTINE_SHARE = 0.05
MAX_ERROR_SHARE = 0.25  # root spans with status error/timeout
MAX_KEY_NULL_SHARE = 0.05  # route, task type, prompt version on roots; model on llm spans
MIN_ROOT_SHARE, MAX_ROOT_SHARE = 0.02, 0.5  # roots among spans: 2 to 50 spans per trace
MAX_ROOT_P99_MS = 300_000.0  # 5 minutes
MAX_SPAN_MS = 3_600_000.0  # one hour
MAX_DURATION_MISMATCH_SHARE = 0.01  # duration_ms disagreeing with end - start by > 1 ms
MAX_INPUT_TOKENS = 2_000_000
MAX_OUTPUT_TOKENS = 200_000
MAX_LLM_INPUT_P99 = 200_000.0
MAX_ZERO_TOKEN_SHARE = 0.05
MAX_LATE_SHARE_SPANS = 0.10  # spans landed more than a day after they happened
MAX_LATE_SHARE_FEEDBACK = 0.20  # feedback landed more than 7 days after the user acted
MAX_LATE_SHARE_ANNOTATIONS = 0.20  # labels landed more than 7 days after labelling
MAX_DUPLICATE_SHARE = 0.05  # the same id twice within one batch
MAX_REDELIVERED_SHARE = 0.20  # ids that some other batch delivered already
MAX_THUMBS_DOWN_SHARE = 0.6
MAX_ANNOTATION_NULL_SHARE = 0.5  # correctness missing on a label
DATASETS = ("spans", "feedback", "annotations")  # one batch suite each, run when it has new batches


@dataclass
class NewBatches:
    """The ledger entries not checked yet: (dataset, batch_id) with their landing counts."""

    frame: pd.DataFrame  # dataset, batch_id, source, received, accepted, quarantined

    def batch_ids(self, dataset: str) -> list[str]:
        """Batch ids of ``dataset``, sorted."""
        return sorted(self.frame.loc[self.frame["dataset"] == dataset, "batch_id"].unique())

    def __len__(self) -> int:
        return int(self.frame[["dataset", "batch_id"]].drop_duplicates().shape[0])


def _q(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def ensure_state(con: duckdb.DuckDBPyConnection) -> None:
    """Create the ``quality`` schema and its state table if they are missing."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} ("
        "dataset VARCHAR, batch_id VARCHAR, run_id VARCHAR, checked_at TIMESTAMPTZ, "
        "warnings INTEGER)"
    )


def new_batches(
    con: duckdb.DuckDBPyConnection, lake: Path, *, all_batches: bool = False
) -> NewBatches:
    """Ledger entries (summed over their days) that ``quality.checked_batches`` does not list."""
    ensure_state(con)
    empty = pd.DataFrame(
        columns=["dataset", "batch_id", "source", "received", "accepted", "quarantined"]
    )
    if not any(lake.glob(f"{LEDGER_DIR}/*/*.parquet")):
        return NewBatches(empty)
    glob = lake / LEDGER_DIR / "*" / "*.parquet"
    skip = "" if all_batches else (
        f"WHERE (dataset, batch_id) NOT IN (SELECT (dataset, batch_id) FROM {STATE_TABLE})"
    )
    frame = con.execute(
        f"""
        SELECT dataset, batch_id, any_value(source) AS source,
               sum(received)::BIGINT AS received, sum(accepted)::BIGINT AS accepted,
               sum(quarantined)::BIGINT AS quarantined
        FROM read_parquet({_q(glob)})
        {skip}
        GROUP BY dataset, batch_id
        ORDER BY dataset, batch_id
        """
    ).df()
    return NewBatches(frame)


def mark_checked(
    con: duckdb.DuckDBPyConnection, batches: NewBatches, run_id: str, warnings: dict[str, int]
) -> None:
    """Record the batches as checked by ``run_id`` (``warnings``: batch id -> failures)."""
    ensure_state(con)
    frame = batches.frame[["dataset", "batch_id"]].drop_duplicates().copy()
    frame["run_id"] = run_id
    frame["warnings"] = [warnings.get(b, 0) for b in frame["batch_id"]]
    con.register("__checked", frame)
    try:
        con.execute(
            f"DELETE FROM {STATE_TABLE} WHERE (dataset, batch_id) IN "
            "(SELECT (dataset, batch_id) FROM __checked)"
        )
        con.execute(
            f"INSERT INTO {STATE_TABLE} SELECT dataset, batch_id, run_id, now(), warnings "
            "FROM __checked"
        )
    finally:
        con.unregister("__checked")


def _batch_files(lake: Path, dataset: str, batch_ids: list[str]) -> list[str]:
    """The files holding rows of ``batch_ids``: their own, or a compacted file of their days."""
    wanted = set(batch_ids)
    days: set[str] = set()
    for batch_id in wanted:  # the ledger says on which days each batch has rows
        entry = lake / LEDGER_DIR / dataset / f"{batch_id}.parquet"
        if entry.exists():
            days.update(pq.read_table(entry, columns=["dt"]).column("dt").to_pylist())
    return [
        str(p) for p in sorted((lake / dataset).glob("dt=*/*.parquet"))
        if p.stem in wanted
        or (p.stem.startswith(COMPACTED_PREFIX) and p.parent.name.removeprefix("dt=") in days)
    ]


# a row's batch: its file's name, or the `_batch_id` a compacted file keeps per row
_BATCH_OF_FILE = r"coalesce(_batch_id, regexp_extract(filename, '([^/]+)\.parquet$', 1))"


def _rows_of(files_sql: str, optional: tuple[str, ...] = ()) -> str:
    """Rows of the given files with `filename`, `_batch_id` and ``optional`` (VARCHAR columns
    that files written before they existed lack) always present."""
    empty = ", ".join(f"NULL::VARCHAR AS {c}" for c in ("_batch_id", *optional))
    return (
        f"(SELECT * FROM (SELECT {empty} WHERE false) UNION ALL BY NAME "
        f"SELECT * FROM read_parquet({files_sql}, filename = true, union_by_name = true))"
    )

_SPANS_STATS = f"""
WITH rows AS (
    SELECT * FROM (
        SELECT {_BATCH_OF_FILE} AS batch_id, *, parent_span_id IS NULL AS is_root
        FROM {_rows_of("$files")}
    ) WHERE batch_id IN (SELECT unnest($batches))
)
SELECT
    batch_id,
    count(*)::BIGINT AS rows,
    avg(is_root::INT) AS root_share,
    coalesce(avg((status IN ('error', 'timeout'))::INT) FILTER (WHERE is_root), 0)
        AS root_error_share,
    coalesce(avg((route_name IS NULL)::INT) FILTER (WHERE is_root), 0) AS root_route_null_share,
    coalesce(avg((task_type IS NULL)::INT) FILTER (WHERE is_root), 0) AS root_task_type_null_share,
    coalesce(avg((prompt_version IS NULL)::INT) FILTER (WHERE is_root), 0)
        AS root_prompt_version_null_share,
    coalesce(avg((model_name IS NULL)::INT) FILTER (WHERE span_type = 'llm'), 0)
        AS llm_model_null_share,
    coalesce(quantile_cont(duration_ms, 0.99) FILTER (WHERE is_root), 0) AS root_duration_p99_ms,
    coalesce(max(duration_ms), 0) AS duration_max_ms,
    avg((abs((epoch_us(end_time) - epoch_us(event_time)) / 1000.0 - duration_ms) > 1)::INT)
        AS duration_mismatch_share,
    coalesce(max(input_tokens), 0)::BIGINT AS input_tokens_max,
    coalesce(max(output_tokens), 0)::BIGINT AS output_tokens_max,
    coalesce(quantile_cont(input_tokens, 0.99) FILTER (WHERE span_type = 'llm'), 0)
        AS llm_input_tokens_p99,
    coalesce(avg((coalesce(input_tokens, 0) = 0)::INT) FILTER (WHERE span_type = 'llm'), 0)
        AS llm_zero_input_share,
    coalesce(min(cost_usd_estimate), 0) AS cost_usd_estimate_min,
    avg((ingest_time - event_time > INTERVAL 1 DAY)::INT) AS late_share,
    1 - count(DISTINCT span_id) / count(*) AS duplicate_share
FROM rows
GROUP BY batch_id
"""

_FEEDBACK_STATS = f"""
WITH rows AS (
    SELECT * FROM (
        SELECT {_BATCH_OF_FILE} AS batch_id, *
        FROM {_rows_of("$files")}
    ) WHERE batch_id IN (SELECT unnest($batches))
)
SELECT
    batch_id,
    count(*)::BIGINT AS rows,
    avg((feedback_type = 'thumbs_down')::INT) AS thumbs_down_share,
    avg((ingest_time - event_time > INTERVAL 7 DAY)::INT) AS late_share,
    avg((ingest_time < event_time - INTERVAL 1 HOUR)::INT) AS from_future_share,
    1 - count(DISTINCT feedback_id) / count(*) AS duplicate_share
FROM rows
GROUP BY batch_id
"""

_ANNOTATIONS_STATS = f"""
WITH rows AS (
    SELECT * FROM (
        SELECT {_BATCH_OF_FILE} AS batch_id, *
        FROM {_rows_of("$files", ("annotation_kind",))}
    ) WHERE batch_id IN (SELECT unnest($batches))
)
SELECT
    batch_id,
    count(*)::BIGINT AS rows,
    -- among labels only: promotions and eval results carry no correctness by design
    coalesce(avg((correctness IS NULL)::INT)
                 FILTER (WHERE coalesce(annotation_kind, 'label') = 'label'), 0)
        AS correctness_null_share,
    avg((failure_category IS NOT NULL)::INT) AS failure_share,
    avg((ingest_time - label_time > INTERVAL 7 DAY)::INT) AS late_share,
    avg((ingest_time < label_time - INTERVAL 1 HOUR)::INT) AS from_future_share,
    1 - count(DISTINCT annotation_id) / count(*) AS duplicate_share
FROM rows
GROUP BY batch_id
"""

_STATS = {"spans": _SPANS_STATS, "feedback": _FEEDBACK_STATS, "annotations": _ANNOTATIONS_STATS}
_ID_COLUMN = {"spans": "span_id", "feedback": "feedback_id", "annotations": "annotation_id"}


def _between(column: str, lo: float | None, hi: float | None, why: str) -> Check:
    kwargs: dict[str, object] = {"column": column}
    if lo is not None:
        kwargs["min_value"] = lo
    if hi is not None:
        kwargs["max_value"] = hi
    return Check("ExpectColumnValuesToBeBetween", kwargs, why)


def _common_checks(late_max: float, late_why: str) -> list[Check]:
    return [
        _between("quarantine_share", None, MAX_QUARANTINE_SHARE,
                 "Few rows of a batch break the contract; many means a producer changed shape."),
        _between("late_share", None, late_max, late_why),
        _between("duplicate_share", None, MAX_DUPLICATE_SHARE,
                 "The same id repeated inside one batch: a retrying producer or a replay."),
        _between("redelivered_share", None, MAX_REDELIVERED_SHARE,
                 "Ids already landed by other batches: at-least-once is normal, a replay is not."),
        Check("ExpectColumnValuesToNotBeNull", {"column": "rows"},
              "Every ledger entry has rows in the lake unless all were quarantined."),
    ]


def suite_checks(dataset: str) -> list[Check]:
    """The batch suite of ``dataset``: expectations over its per-batch statistics frame."""
    if dataset == "spans":
        return [
            *_common_checks(MAX_LATE_SHARE_SPANS,
                            "Spans landing more than a day late hold back every daily metric."),
            _between("root_share", MIN_ROOT_SHARE, MAX_ROOT_SHARE,
                     "Roots among spans: outside 2 to 50 spans per trace, traces are broken up."),
            _between("root_error_share", None, MAX_ERROR_SHARE,
                     "Share of requests ending in error or timeout."),
            _between("root_route_null_share", None, MAX_KEY_NULL_SHARE,
                     "route_name on root spans: without it no cost or quality by route."),
            _between("root_task_type_null_share", None, MAX_KEY_NULL_SHARE,
                     "task_type on root spans: every metric is segmented by it."),
            _between("root_prompt_version_null_share", None, MAX_KEY_NULL_SHARE,
                     "prompt_version on root spans: change points blame versions by it."),
            _between("llm_model_null_share", None, MAX_KEY_NULL_SHARE,
                     "model_name on llm spans: without it the span cannot be priced."),
            _between("root_duration_p99_ms", 0, MAX_ROOT_P99_MS,
                     "p99 request duration above 5 minutes is a clock or unit error."),
            _between("duration_max_ms", 0, MAX_SPAN_MS,
                     "No span lasts more than an hour; a longer one has a unit or clock error."),
            _between("duration_mismatch_share", None, MAX_DURATION_MISMATCH_SHARE,
                     "duration_ms should equal end_time - event_time."),
            _between("input_tokens_max", 0, MAX_INPUT_TOKENS,
                     "Input tokens beyond any model's context window are a counting error."),
            _between("output_tokens_max", 0, MAX_OUTPUT_TOKENS,
                     "Output tokens beyond any model's limit are a counting error."),
            _between("llm_input_tokens_p99", 0, MAX_LLM_INPUT_P99,
                     "p99 prompt size of llm spans."),
            _between("llm_zero_input_share", None, MAX_ZERO_TOKEN_SHARE,
                     "llm spans with no input tokens: usage not reported, cost underestimated."),
            _between("cost_usd_estimate_min", 0, None,
                     "A producer's cost estimate is never negative."),
        ]
    if dataset == "feedback":
        return [
            *_common_checks(MAX_LATE_SHARE_FEEDBACK,
                            "Feedback normally lands within days of the answer."),
            _between("thumbs_down_share", None, MAX_THUMBS_DOWN_SHARE,
                     "A batch of mostly thumbs-down is an incident or a mislabelled event type."),
            _between("from_future_share", None, 0.0,
                     "Feedback ingested before the user acted: a clock error."),
        ]
    if dataset == "annotations":
        return [
            *_common_checks(MAX_LATE_SHARE_ANNOTATIONS,
                            "Labels normally land within days of being made."),
            _between("correctness_null_share", None, MAX_ANNOTATION_NULL_SHARE,
                     "Labels without correctness do not count for task success."),
            _between("from_future_share", None, 0.0,
                     "Labels ingested before they were made: a clock error."),
        ]
    raise ValueError(f"no batch suite for dataset {dataset!r}")


def batch_stats(
    con: duckdb.DuckDBPyConnection, lake: Path, dataset: str, batches: NewBatches
) -> pd.DataFrame:
    """One row per new batch of ``dataset`` with the statistics its suite checks."""
    ledger = batches.frame.loc[batches.frame["dataset"] == dataset,
                               ["batch_id", "received", "accepted", "quarantined"]]
    files = _batch_files(lake, dataset, list(ledger["batch_id"]))
    if files:
        wanted = list(ledger["batch_id"])
        stats = con.execute(_STATS[dataset], {"files": files, "batches": wanted}).df()
        redelivered = _redelivered(con, dataset, files, wanted)
        stats = stats.merge(redelivered, on="batch_id", how="left")
    else:
        stats = pd.DataFrame(columns=["batch_id", "rows", "redelivered_share"])
    frame = ledger.merge(stats, on="batch_id", how="left")
    received = frame["received"].where(frame["received"] > 0)
    frame["quarantine_share"] = (frame["quarantined"] / received).fillna(0.0)
    # A batch whose rows were all quarantined has no statistics: only its quarantine share counts.
    frame.loc[frame["accepted"] == 0, "rows"] = 0
    frame["redelivered_share"] = frame["redelivered_share"].fillna(0.0)
    return frame.reset_index(drop=True)


def _redelivered(
    con: duckdb.DuckDBPyConnection, dataset: str, files: list[str], batch_ids: list[str],
) -> pd.DataFrame:
    """Per new batch, the share of its ids that another batch file of the lake holds too.

    Only the files of the new files' own `dt` partitions are read: an id's copies share its
    `event_time` (`label_time`), hence its partition (EVENTS.md), so the check costs what landed
    and the partitions it landed in, not the whole lake.
    """
    id_col = _ID_COLUMN[dataset]
    partitions = sorted({str(Path(f).parent) for f in files})
    nearby = sorted(str(p) for d in partitions for p in Path(d).glob("*.parquet"))
    # On a first check every file is new: read the ids once instead of twice.
    source = "new_rows" if set(nearby) == set(files) else _rows_of("$nearby")
    params: dict[str, object] = {"files": files, "batches": batch_ids}
    if source != "new_rows":
        params["nearby"] = nearby
    return con.execute(
        f"""
        WITH new_rows AS (
            SELECT * FROM {_rows_of("$files")}
        ),
        new_ids AS (
            SELECT DISTINCT {_BATCH_OF_FILE} AS batch_id, {id_col} AS id FROM new_rows
            WHERE {_BATCH_OF_FILE} IN (SELECT unnest($batches))
        ),
        everywhere AS (
            SELECT {id_col} AS id, count(DISTINCT {_BATCH_OF_FILE}) AS batches
            FROM {source}
            WHERE {id_col} IN (SELECT id FROM new_ids)
            GROUP BY 1
        )
        SELECT batch_id, avg((coalesce(batches, 1) > 1)::INT) AS redelivered_share
        FROM new_ids LEFT JOIN everywhere USING (id)
        GROUP BY batch_id
        """,
        params,
    ).df()


def check_batches(
    con: duckdb.DuckDBPyConnection,
    lake: Path,
    session: GxSession,
    *,
    all_batches: bool = False,
) -> tuple[NewBatches, list[SuiteResult]]:
    """Validate the batches landed since the last check; one suite result per dataset with new ones.

    Does not mark the batches as checked (see :func:`mark_checked`), so a caller decides when.
    """
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    batches = new_batches(con, lake, all_batches=all_batches)
    # A dataset without a new batch has no suite to run. The statistics of the others are all
    # computed (DuckDB) before the first validation, while GX may still be importing (prewarm).
    frames = {dataset: batch_stats(con, lake, dataset, batches) for dataset in DATASETS
              if batches.batch_ids(dataset)}
    results = [
        session.validate(
            f"lake.{dataset}.batches",
            frame,
            suite_checks(dataset),
            stage="batch",
            target=dataset,
            severity=WARN,
            index_column="batch_id",
        )
        for dataset, frame in frames.items()
    ]
    return batches, results
