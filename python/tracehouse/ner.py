"""An optional NER pass for names of people and places in tier-2 free text, with Presidio.

The regular detectors (:mod:`tracehouse.redaction`) find structured PII; names and addresses
need a named-entity model. :class:`PresidioNer` runs Microsoft Presidio's analyzer over a spaCy
pipeline and masks ``PERSON`` as ``[PERSON]`` and ``LOCATION`` (spaCy ``GPE``, ``LOC``,
``FAC``: cities, countries, streets, buildings) as ``[LOCATION]``. It is an optional extra
(``pip install 'tracehouse[ner]'``) used by ``tracehouse ingest ... --ner presidio``.

The spaCy model is never downloaded at run time: Presidio would fetch it from GitHub on first
use, which a locked-down network refuses (this one does). Install the model package first, or
pass the path of a model folder; otherwise :class:`NerUnavailableError` says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from tracehouse.errors import ConfigurationError

DEFAULT_MODEL: Final = "en_core_web_lg"
MASKS: Final[dict[str, str]] = {"PERSON": "[PERSON]", "LOCATION": "[LOCATION]"}
# spaCy labels (OntoNotes and WikiNER models) to Presidio entities.
SPACY_LABELS: Final[dict[str, str]] = {
    "PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
    "FAC": "LOCATION",
}
MAX_NER_CHARS: Final = 10_000  # the model sees at most this much of one value


class NerUnavailableError(ConfigurationError, RuntimeError):
    """The NER pass cannot run here (extra or model missing); the message says how to fix it."""


class PresidioNer:
    """Presidio's analyzer over a local spaCy model, masking people's names and places."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        language: str = "en",
        entities: Sequence[str] = tuple(MASKS),
        score_threshold: float = 0.5,
    ) -> None:
        try:
            import spacy
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider
        except ImportError as exc:
            raise NerUnavailableError(
                "the NER pass needs Presidio: pip install 'tracehouse[ner]' "
                f"(presidio-analyzer and spaCy); {exc}"
            ) from None
        if not (spacy.util.is_package(model) or Path(model).is_dir()):
            raise NerUnavailableError(
                f"spaCy model {model!r} is not installed. Presidio would download it from "
                "GitHub at first use, and tracehouse never downloads at run time (this network "
                f"refuses it). Install it where it can be fetched (`python -m spacy download "
                f"{model}`, or pip install its wheel), or pass --ner-model with the path of a "
                "spaCy model folder."
            )
        unknown = set(entities) - set(MASKS)
        if unknown:
            raise NerUnavailableError(f"entities {sorted(unknown)} not in {sorted(MASKS)}")
        provider = NlpEngineProvider(nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": language, "model_name": model}],
            "ner_model_configuration": {
                "model_to_presidio_entity_mapping": SPACY_LABELS,
                "low_score_entity_names": [],
                "labels_to_ignore": [],
            },
        })
        quiet = logging.getLogger("presidio-analyzer")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # one warning per recognizer of other languages
        try:
            self._analyzer: Any = AnalyzerEngine(nlp_engine=provider.create_engine(),
                                                 supported_languages=[language])
        finally:
            quiet.setLevel(level)
        self.model = model
        self.language = language
        self.entities = list(entities)
        self.score_threshold = score_threshold

    def mask(self, text: str) -> tuple[str, int]:
        """``text`` with every person and location found replaced by its mask; how many."""
        if not text:
            return text, 0
        head, tail = text[:MAX_NER_CHARS], text[MAX_NER_CHARS:]
        results = self._analyzer.analyze(text=head, language=self.language,
                                         entities=self.entities,
                                         score_threshold=self.score_threshold)
        spans = sorted(((r.start, r.end, r.entity_type) for r in results), reverse=True)
        out, last_start, n = head, len(head) + 1, 0
        for start, end, entity in spans:
            if end > last_start:  # overlapping: the later (outer) one already masked it
                continue
            out = out[:start] + MASKS[entity] + out[end:]
            last_start, n = start, n + 1
        return out + tail, n


def load_ner(kind: str | None, model: str | None = None) -> PresidioNer | None:
    """The NER pass named ``kind`` (``presidio`` or None/``none``), or a clear error."""
    if kind in (None, "", "none"):
        return None
    if kind != "presidio":
        raise NerUnavailableError(f"unknown NER pass {kind!r}: use 'presidio' or 'none'")
    return PresidioNer(model or DEFAULT_MODEL)
