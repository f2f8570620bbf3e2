"""The optional Presidio NER pass (names and places) in `tracehouse ingest`.

No spaCy model can be downloaded here (Presidio fetches one from GitHub at first use, which this
network refuses), so the tests build a small rule-based spaCy pipeline, save it as a model
folder, and load it through the same code path as an installed model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tracehouse.cli import app
from tracehouse.ner import NerUnavailableError, PresidioNer, load_ner
from tracehouse.redaction import Redactor

spacy = pytest.importorskip("spacy")
pytest.importorskip("presidio_analyzer")

KEY = b"ner-test-key-0123456789abcdef"
T0 = 1_772_614_800_000_000_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([
        {"label": "PERSON", "pattern": [{"LOWER": "grace"}, {"LOWER": "hopper"}]},
        {"label": "GPE", "pattern": "Arlington"},
        {"label": "FAC", "pattern": [{"LOWER": "1"}, {"LOWER": "main"}, {"LOWER": "street"}]},
    ])
    path = tmp_path_factory.mktemp("spacy") / "rules_model"
    nlp.to_disk(path)
    return path


def test_presidio_masks_people_and_places(model_dir: Path) -> None:
    ner = PresidioNer(str(model_dir))
    text, n = ner.mask("I am Grace Hopper from Arlington, 1 Main Street; order 42")
    assert text == "I am [PERSON] from [LOCATION], [LOCATION]; order 42" and n == 3


def test_redactor_free_text_runs_the_ner_pass_after_the_detectors(model_dir: Path) -> None:
    red = Redactor(KEY)
    red.ner = PresidioNer(str(model_dir))
    tags: set[str] = set()
    out = red.free_text("Grace Hopper <grace@example.com> called", tags)
    assert out == "[PERSON] <[EMAIL]> called" and "pii_masked" in tags


def test_a_missing_model_fails_with_a_clear_message_and_no_download() -> None:
    with pytest.raises(NerUnavailableError, match=r"not installed.*never downloads"):
        load_ner("presidio", "en_core_web_lg_not_here")
    with pytest.raises(NerUnavailableError, match="unknown NER pass"):
        load_ner("flair")
    assert load_ner("none") is None


def _otlp_file(tmp_path: Path) -> Path:
    span = {"traceId": "11" * 16, "spanId": "22" * 8, "name": "lookup", "kind": 1,
            "startTimeUnixNano": str(T0), "endTimeUnixNano": str(T0 + 10**9),
            "status": {"code": 2, "message": "no invoice for Grace Hopper in Arlington"},
            "attributes": []}
    doc = {"resourceSpans": [{"resource": {"attributes": []},
                              "scopeSpans": [{"spans": [span]}]}]}
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    return path


def test_cli_ingest_otlp_with_ner(tmp_path: Path, model_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEHOUSE_HASH_KEY", KEY.decode())
    lake = tmp_path / "lake"
    args = ["ingest", "otlp", "--lake", str(lake), str(_otlp_file(tmp_path))]
    missing = CliRunner().invoke(app, [*args, "--ner", "presidio", "--ner-model",
                                       "en_core_web_lg_not_here"])
    assert missing.exit_code == 2 and "not installed" in missing.output
    assert not lake.exists() or not list(lake.rglob("*.parquet"))
    ok = CliRunner().invoke(app, [*args, "--ner", "presidio", "--ner-model", str(model_dir)])
    assert ok.exit_code == 0, ok.output
    (row,) = pq.read_table(next(lake.glob("spans/dt=*/*.parquet"))).to_pylist()
    assert row["error_message_redacted"] == "no invoice for [PERSON] in [LOCATION]"
