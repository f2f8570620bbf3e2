"""The tier-3 artifact store: encryption, keys, rotation, dedup, retention, audited reads."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tracehouse.artifacts import (
    ArtifactKeyError,
    ArtifactStore,
    ArtifactTamperedError,
    MasterKey,
    rotate_master_key,
)
from tracehouse.artifacts.audit import AuditWriteError, Reader, audit_root
from tracehouse.artifacts.content import (
    AccessRefusedError,
    read_trace_content,
    trace_artifact_refs,
)
from tracehouse.artifacts.expire import expire_artifacts
from tracehouse.artifacts.policy import PolicyError, load_policy, parse_policy
from tracehouse.cli import app

MASTER = "m" * 40
OTHER = "o" * 40
SECRET_TEXT = "my card is 4111 1111 1111 1111, mail jane.doe@example.com"
TRACE = "5b8efff798038103d269b633813fc60c"

POLICY_TOML = """
[classes]
short = { days = 7 }
standard = { days = 30 }
forever = {}

[artifacts]
default = "standard"
kinds = { prompt_template = "forever" }
[artifacts.tenants.acme]
span_content = "short"

[lake]
default = { tier2_text = "standard", spans = "forever" }

[access]
content_roles = ["oncall", "privacy_officer"]
"""


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store", master_key=MasterKey.from_secret(MASTER))


@pytest.fixture
def policy(tmp_path: Path):
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return load_policy(path)


def _payload_files(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*.tha")}


def test_round_trip_and_nothing_readable_without_the_key(store: ArtifactStore) -> None:
    ref = store.put("span_content", {"input.value": SECRET_TEXT}, tenant_id="acme")
    assert ref["privacy_class"] == "tier3" and ref["uri"].startswith("tracehouse-artifact://acme/")
    assert store.get(ref["uri"]) == {"input.value": SECRET_TEXT}
    # nothing in the store holds the text, the address or the data key in clear
    for path in store.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"jane.doe" not in data and b"4111" not in data
            assert oct(path.stat().st_mode)[-3:] == "600"
    # the address is keyed: not the sha256 of the text, and another tenant gets another one
    import hashlib
    import json

    canon = json.dumps({"input.value": SECRET_TEXT}, sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False).encode()
    assert ref["artifact_id"] != hashlib.sha256(canon).hexdigest()
    other = store.put("span_content", {"input.value": SECRET_TEXT}, tenant_id="globex")
    assert other["artifact_id"] != ref["artifact_id"]


def test_artifact_store_is_outside_the_lake(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with pytest.raises(ValueError, match="must not be inside the lake"):
        ArtifactStore(lake / "artifacts", lake=lake, master_key=MasterKey.from_secret(MASTER))


def test_missing_or_wrong_master_key_fails_clearly(
    store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = store.put("span_content", {"output.value": "hello"}, tenant_id="acme")
    wrong = ArtifactStore(store.root, master_key=MasterKey.from_secret(OTHER))
    with pytest.raises(ArtifactKeyError, match="wrong master key"):
        wrong.get(ref["uri"])
    with pytest.raises(ArtifactKeyError, match="wrong master key"):  # nor can it write
        wrong.put("span_content", {"output.value": "x"}, tenant_id="acme")
    monkeypatch.delenv("TRACEHOUSE_MASTER_KEY", raising=False)
    with pytest.raises(ArtifactKeyError, match="TRACEHOUSE_MASTER_KEY is not set"):
        ArtifactStore(store.root).get(ref["uri"])
    with pytest.raises(ArtifactKeyError, match="at least 16 bytes"):
        MasterKey.from_secret("short")


def test_tampering_is_detected(store: ArtifactStore) -> None:
    ref = store.put("span_content", {"output.value": "hello world"}, tenant_id="acme")
    other = store.put("span_content", {"output.value": "something else"}, tenant_id="acme")
    (path,) = list(store.root.rglob(f"{ref['artifact_id']}.tha"))
    (other_path,) = list(store.root.rglob(f"{other['artifact_id']}.tha"))
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[-5] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactTamperedError, match="does not authenticate"):
        store.get(ref["uri"])
    # a valid payload copied over another address does not pass either
    path.write_bytes(other_path.read_bytes())
    with pytest.raises(ArtifactTamperedError):
        store.get(ref["uri"])
    path.write_bytes(original)
    assert store.get(ref["uri"]) == {"output.value": "hello world"}


def test_rotation_rewraps_keys_and_leaves_payloads_untouched(store: ArtifactStore) -> None:
    refs = [store.put("span_content", {"input.value": f"q{i}"}, tenant_id=t)
            for i, t in enumerate(["acme", "globex", "acme"])]
    before = _payload_files(store.root)
    keys_before = {p: p.read_bytes() for p in (store.root / "_keys").glob("*.json")}
    old, new = MasterKey.from_secret(MASTER), MasterKey.from_secret(OTHER)
    # a wrong old key changes nothing
    with pytest.raises(ArtifactKeyError):
        rotate_master_key(store.root, MasterKey.from_secret("x" * 20), new)
    assert {p: p.read_bytes() for p in keys_before} == keys_before
    report = rotate_master_key(store.root, old, new)
    assert sorted(report.rewrapped) == ["acme", "globex"]
    assert rotate_master_key(store.root, old, new).already_new == ["acme", "globex"]  # re-run
    assert _payload_files(store.root) == before  # same bytes, same mtimes
    assert all(p.read_bytes() != keys_before[p] for p in keys_before)
    rotated = ArtifactStore(store.root, master_key=new)
    assert [rotated.get(r["uri"]) for r in refs] == [{"input.value": f"q{i}"} for i in range(3)]
    with pytest.raises(ArtifactKeyError, match="wrong master key"):
        ArtifactStore(store.root, master_key=old).get(refs[0]["uri"])


def test_same_content_is_stored_once(store: ArtifactStore) -> None:
    template = {"gen_ai.system_instructions": "You are the billing assistant. Be brief."}
    a = store.put_span_content({**template, "gen_ai.input.messages": "q1"}, tenant_id="acme")
    b = store.put_span_content({**template, "gen_ai.input.messages": "q2"}, tenant_id="acme")
    assert [r["kind"] for r in a] == ["prompt_template", "span_content"]
    assert a[0] == b[0] and a[1]["artifact_id"] != b[1]["artifact_id"]
    files = list(store.root.rglob("*.tha"))
    assert len(files) == 3  # one template, two span contents
    assert len(list((store.root / "acme" / "prompt_template").rglob("*.tha"))) == 1


def test_expire_removes_what_its_class_says_and_nothing_else(store: ArtifactStore,
                                                              policy) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    made = {}
    for tenant in ("acme", "globex"):
        for kind in ("span_content", "prompt_template"):
            for age in (3, 10, 40):
                ref = store.put(kind, {"v": f"{tenant}-{kind}-{age}"}, tenant_id=tenant)
                (path,) = store.root.rglob(f"{ref['artifact_id']}.tha")
                t = (now - timedelta(days=age)).timestamp()
                os.utime(path, (t, t))
                made[(tenant, kind, age)] = path
    report = expire_artifacts(store, policy, now=now)
    # acme span_content: short (7 d); globex span_content: standard (30 d); templates: forever
    gone = {k for k, p in made.items() if not p.exists()}
    assert gone == {("acme", "span_content", 10), ("acme", "span_content", 40),
                    ("globex", "span_content", 40)}
    assert len(report.removed) == 3 and report.kept == len(made) - 3
    assert report.by_class == {("acme", "span_content"): 2, ("globex", "span_content"): 1}


def test_policy_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="does not define"):
        parse_policy({"classes": {"a": {"days": 1}}, "artifacts": {"default": "b"}})
    with pytest.raises(PolicyError, match="lake tiers"):
        parse_policy({"classes": {"a": {"days": 1}}, "lake": {"default": {"tier9": "a"}}})
    bad = tmp_path / "p.toml"
    bad.write_text("[classes\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)


# ---- audited reads -----------------------------------------------------------------------


def _warehouse_with_refs(root: Path, refs: list[dict]) -> Path:
    """A warehouse holding just marts.fct_spans with the given artifact refs on one span."""
    root.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / "tracehouse.duckdb"))
    con.execute("create schema marts")
    ref_type = ("struct(artifact_id varchar, kind varchar, uri varchar, privacy_class varchar, "
                "bytes bigint, sha256 varchar)")
    con.execute(f"create table marts.fct_spans (trace_id varchar, span_id varchar, "
                f"span_type varchar, operation_name varchar, event_time timestamptz, "
                f"artifact_refs {ref_type}[])")
    con.execute("insert into marts.fct_spans values (?, 'a1b2c3d4e5f60708', 'llm', 'chat', "
                "now(), ?), (?, 'ffff000011112222', 'request', 'root', now(), [])",
                [TRACE, refs, TRACE])
    con.close()
    return root


def _audit_rows(lake: Path) -> list[dict]:
    files = sorted(audit_root(lake).glob("dt=*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


def test_content_read_is_audited_before_anything_is_decrypted(
    store: ArtifactStore, policy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = store.put_span_content({"gen_ai.system_instructions": "sys",
                                   "gen_ai.input.messages": SECRET_TEXT}, tenant_id="acme")
    warehouse = _warehouse_with_refs(tmp_path / "wh", refs)
    found = trace_artifact_refs(warehouse, TRACE)
    assert [r["artifact_id"] for r in found] == [r["artifact_id"] for r in refs]
    lake = tmp_path / "lake"
    order: list[str] = []
    real_get = store.get

    def get(uri: str):
        order.append("audit exists" if _audit_rows(lake) else "NO AUDIT")
        return real_get(uri)

    monkeypatch.setattr(store, "get", get)
    content = read_trace_content(store=store, policy=policy, lake=lake, trace_id=TRACE,
                                 refs=found, reason="ticket 4711, mail jane@x.com",
                                 reader=Reader("alice", "oncall"))
    assert order == ["audit exists", "audit exists"]
    assert [i.payload for i in content.items] == [{"gen_ai.system_instructions": "sys"},
                                                  {"gen_ai.input.messages": SECRET_TEXT}]
    rows = _audit_rows(lake)
    assert {(r["reader"], r["role"], r["trace_id"], r["outcome"]) for r in rows} == {
        ("alice", "oncall", TRACE, "granted")}
    assert sorted(r["artifact_id"] for r in rows) == sorted(r["artifact_id"] for r in refs)
    assert rows[0]["reason"] == "ticket 4711, mail [EMAIL]"  # the reason lands masked


def test_unwritable_audit_shows_nothing(store: ArtifactStore, policy, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    refs = store.put_span_content({"output.value": SECRET_TEXT}, tenant_id="acme")
    lake = tmp_path / "lake"
    (lake / "_audit").mkdir(parents=True)
    (lake / "_audit" / "content_access").write_text("a file where the folder should be")
    called: list[str] = []
    monkeypatch.setattr(store, "get", called.append)
    with pytest.raises(AuditWriteError, match="cannot write the audit record"):
        read_trace_content(store=store, policy=policy, lake=lake, trace_id=TRACE, refs=refs,
                           reason="debugging", reader=Reader("alice", "oncall"))
    assert called == []


def test_role_refused_and_reason_required(store: ArtifactStore, policy, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    refs = store.put_span_content({"output.value": SECRET_TEXT}, tenant_id="acme")
    lake = tmp_path / "lake"
    called: list[str] = []
    monkeypatch.setattr(store, "get", called.append)
    with pytest.raises(AccessRefusedError, match="role 'analyst' may not"):
        read_trace_content(store=store, policy=policy, lake=lake, trace_id=TRACE, refs=refs,
                           reason="curious", reader=Reader("bob", "analyst"))
    with pytest.raises(AccessRefusedError, match="needs --reason"):
        read_trace_content(store=store, policy=policy, lake=lake, trace_id=TRACE, refs=refs,
                           reason="  ", reader=Reader("alice", "oncall"))
    assert called == []
    assert [(r["reader"], r["outcome"]) for r in _audit_rows(lake)] == [("bob", "refused")]


def test_cli_rotate_expire_and_content_hook(store: ArtifactStore, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tracehouse.commands.artifacts import show_trace_content

    refs = store.put_span_content({"output.value": SECRET_TEXT}, tenant_id="acme")
    warehouse = _warehouse_with_refs(tmp_path / "wh", refs)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY_TOML)
    runner = CliRunner()
    monkeypatch.setenv("TRACEHOUSE_MASTER_KEY", MASTER)
    monkeypatch.setenv("TRACEHOUSE_NEW_MASTER_KEY", OTHER)
    out = runner.invoke(app, ["artifacts", "rotate-key", "--artifact-dir", str(store.root)])
    assert out.exit_code == 0 and "re-wrapped 1 tenant key" in out.output, out.output
    monkeypatch.setenv("TRACEHOUSE_MASTER_KEY", OTHER)
    monkeypatch.setenv("TRACEHOUSE_ROLE", "oncall")
    lake = tmp_path / "lake"
    import typer

    show_trace_content(trace_id=TRACE, warehouse=warehouse, lake=lake,
                       artifact_dir=store.root, policy=policy, reason="INC-12")
    assert len(_audit_rows(lake)) == 1
    monkeypatch.setenv("TRACEHOUSE_ROLE", "intern")
    with pytest.raises(typer.Exit):
        show_trace_content(trace_id=TRACE, warehouse=warehouse, lake=lake,
                           artifact_dir=store.root, policy=policy, reason="INC-12")
    out = runner.invoke(app, ["artifacts", "expire", "--artifact-dir", str(store.root),
                              "--policy", str(policy), "--dry-run"])
    assert out.exit_code == 0 and "would remove 0, kept 1" in out.output, out.output


def test_otlp_ingest_writes_through_the_store_with_the_carried_tenant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tracehouse.otlp.decode import decode_file_bytes
    from tracehouse.otlp.mapping import spans_to_table
    from tracehouse.redaction import Redactor

    monkeypatch.setenv("TRACEHOUSE_MASTER_KEY", MASTER)
    fixtures = Path(__file__).parent / "fixtures" / "otlp"
    spans = decode_file_bytes((fixtures / "genai.jsonl").read_bytes())
    store = ArtifactStore(tmp_path / "store", lake=tmp_path / "lake")
    table = spans_to_table(spans, Redactor(b"test-key-0123456789abcdef"), artifacts=store)
    with_refs = [r for r in table.to_pylist() if r["artifact_refs"]]
    assert with_refs
    for row in with_refs:
        assert "content_artifact" in row["privacy_tags"]
        for ref in row["artifact_refs"]:
            assert ref["uri"].startswith(f"tracehouse-artifact://{row['tenant_id']}/")
            assert store.get(ref["uri"])  # decrypts
    assert {ref["kind"] for r in with_refs for ref in r["artifact_refs"]} >= {"prompt_template"}


@pytest.mark.slow
def test_audit_records_become_the_content_access_mart(store: ArtifactStore, policy,
                                                     tmp_path: Path) -> None:
    from tracehouse.warehouse import dbt_invoke, warehouse_db

    refs = store.put_span_content({"gen_ai.system_instructions": "sys",
                                   "output.value": SECRET_TEXT}, tenant_id="acme")
    lake = tmp_path / "lake"
    lake.mkdir()
    read_trace_content(store=store, policy=policy, lake=lake, trace_id=TRACE, refs=[
        {**r, "span_id": "a1b2c3d4e5f60708"} for r in refs], reason="INC-9",
        reader=Reader("alice", "oncall"))
    with pytest.raises(AccessRefusedError):
        read_trace_content(store=store, policy=policy, lake=lake, trace_id=TRACE, refs=[],
                           reason="why not", reader=Reader("bob", "analyst"))
    result = dbt_invoke(["build", "--select", "+fct_content_access"], lake=lake,
                        warehouse=tmp_path / "wh")
    assert result.success, "\n".join(result.failures)
    passed = {r.node.name for r in result.results if str(r.status) == "pass"}
    # PK, the not_null / accepted_values checks (one column_checks test) and the unit test
    assert {"unique_fct_content_access_content_access_id", "column_checks_fct_content_access",
            "test_fct_content_access_sizes_each_read_and_keeps_refusals"} <= passed, passed
    con = duckdb.connect(str(warehouse_db(tmp_path / "wh")), read_only=True)
    rows = con.execute("select reader, outcome, artifact_kind, artifacts_in_access "
                       "from marts.fct_content_access order by reader, artifact_kind").fetchall()
    con.close()
    assert rows == [("alice", "granted", "prompt_template", 2),
                    ("alice", "granted", "span_content", 2), ("bob", "refused", None, 0)]


def test_cli_ingest_needs_the_master_key_with_an_artifact_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixtures = Path(__file__).parent / "fixtures" / "otlp"
    runner = CliRunner()
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", "test-key-0123456789abcdef")
    monkeypatch.delenv("TRACEHOUSE_MASTER_KEY", raising=False)
    args = ["ingest", "otlp", "--lake", str(tmp_path / "lake"), "--artifact-dir",
            str(tmp_path / "store"), str(fixtures / "genai.jsonl")]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "TRACEHOUSE_MASTER_KEY is not set" in refused.output
    assert not (tmp_path / "lake").exists()
    monkeypatch.setenv("TRACEHOUSE_MASTER_KEY", MASTER)
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    rows = pq.read_table(next((tmp_path / "lake" / "spans").rglob("*.parquet"))).to_pylist()
    refs = [ref for r in rows for ref in (r["artifact_refs"] or [])]
    assert refs and all(ref["uri"].startswith("tracehouse-artifact://") for ref in refs)
    assert all(b"gen_ai" not in p.read_bytes() for p in (tmp_path / "store").rglob("*.tha"))
