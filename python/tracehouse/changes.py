"""Has anything changed since the last good run? Cheap fingerprints of what a run reads.

A run reads the lake (through its ledger: every landed batch has exactly one ledger file), any
producer files not yet registered, the dbt project (models, macros, seeds, tests, config) and the
Python that checks, detects and publishes. Each is fingerprinted from file names, sizes and
modification times (the project and code from their content), without opening the data: on a
lake of thousands of batches this takes milliseconds, and no dbt import.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LEDGER_DIR = "_ledger"  # as tracehouse.lake.LEDGER_DIR (not imported: keep this module light)
EXPIRED_LEDGER_DIR = "_ledger_expired"  # as tracehouse.lake.EXPIRED_LEDGER_DIR
QUARANTINE_DIR = "_quarantine"
ORIGINALS_DIR = "_originals"
# The contract's datasets (tracehouse.contract.DATASETS; a test keeps them equal), named here so
# that a run with nothing new does not import pyarrow.
DATASET_NAMES = ("spans", "feedback", "annotations")
PROJECT_PARTS = ("models", "macros", "seeds", "tests/dbt", "analyses", "dbt_project.yml",
                 "profiles.yml")


def _walk(root: Path) -> list[os.DirEntry[str]]:
    out: list[os.DirEntry[str]] = []
    try:
        with os.scandir(root) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    out += _walk(Path(entry.path))
                elif entry.is_file():
                    out.append(entry)
    except FileNotFoundError:
        pass
    return out


def ledger_fingerprint(lake: Path) -> str:
    """Names, sizes and mtimes of every ledger file: changes whenever a batch is registered, or
    retention removes rows (``lake expire`` rewrites lake files; its ledger says so)."""
    h = hashlib.sha256()
    entries = sorted(_walk(lake / LEDGER_DIR) + _walk(lake / EXPIRED_LEDGER_DIR),
                     key=lambda e: e.path)
    for e in entries:
        if e.name.endswith(".parquet"):
            st = e.stat()
            h.update(f"{e.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _stems(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as it:
            return {e.name[:-8] for e in it if e.name.endswith(".parquet") and e.is_file()}
    except FileNotFoundError:
        return set()


def producer_files(lake: Path) -> int:
    """How many batch files in the lake have no ledger entry (producer files to adopt).

    The same rule as :func:`tracehouse.lake.unregistered_files`, by directory scans only.
    """
    count = 0
    for dataset in DATASET_NAMES:
        known = _stems(lake / LEDGER_DIR / dataset)
        for root in (lake / dataset, lake / QUARANTINE_DIR / ORIGINALS_DIR / dataset):
            try:
                days = [e.path for e in os.scandir(root)
                        if e.is_dir() and e.name.startswith("dt=")]
            except FileNotFoundError:
                continue
            for day in days:
                count += len(_stems(Path(day)) - known)
    return count


def content_fingerprint(paths: list[Path], *, suffixes: tuple[str, ...] = ()) -> str:
    """sha256 over the relative names and bytes of every file under ``paths``."""
    h = hashlib.sha256()
    for root in paths:
        files = [Path(e.path) for e in _walk(root)] if root.is_dir() else (
            [root] if root.is_file() else [])
        for f in sorted(files):
            if suffixes and f.suffix not in suffixes:
                continue
            if "__pycache__" in f.parts:
                continue
            h.update(f"{f.relative_to(root.parent)}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def code_fingerprint() -> str:
    """tracehouse's own code (the Python that checks, detects and publishes)."""
    package = Path(__file__).resolve().parent
    return content_fingerprint([package], suffixes=(".py", ".yml", ".json", ".csv"))


def project_fingerprint(project: Path) -> str:
    """The dbt project: models, macros, seeds, tests, analyses and config."""
    return content_fingerprint([project / p for p in PROJECT_PARTS])


def build_fingerprint(project: Path, fingerprints: dict[str, str] | None = None) -> str:
    """What the marts' content depends on besides the data: the project and the code (taken from
    ``fingerprints``, a run's :func:`inputs`, when given)."""
    f = fingerprints or {}
    return (f"{f.get('project') or project_fingerprint(project)}:"
            f"{f.get('code') or code_fingerprint()}")


def inputs(lake: Path, project: Path) -> dict[str, str]:
    """Fingerprints of the ledger, the dbt project and tracehouse's own code."""
    return {
        "ledger": ledger_fingerprint(lake),
        "project": project_fingerprint(project),
        "code": code_fingerprint(),
    }
