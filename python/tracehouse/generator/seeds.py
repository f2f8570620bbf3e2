"""The dbt seeds the generator shares with the warehouse, read from the seed files themselves.

`seeds/model_prices.csv` (what each model costs, by date) and `seeds/tool_requirements.csv`
(which requests need which tool) are the single source of truth: the warehouse loads them as
dbt seeds and the generator reads them here, so a price change or a new rule is made once, in
the CSV. The folder is `$TRACEHOUSE_SEEDS_DIR`, else `seeds/` of the dbt project
(`tracehouse.warehouse.project_dir`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from tracehouse.errors import TracehouseError

MODEL_PRICES_FILE: Final = "model_prices.csv"
TOOL_REQUIREMENTS_FILE: Final = "tool_requirements.csv"
MODEL_PRICES_COLUMNS: Final = ("model_name", "model_provider", "effective_from",
                               "input_usd_per_1m", "output_usd_per_1m", "cached_input_usd_per_1m")
TOOL_REQUIREMENTS_COLUMNS: Final = ("task_type", "intent", "tool_name", "description")


class SeedError(TracehouseError, ValueError):
    """A seed file that is missing or does not parse (names the file and the row)."""


@dataclass(frozen=True)
class ModelPrice:
    """One row of the price table: USD per 1M tokens from ``effective_from`` on."""

    model_name: str
    model_provider: str
    effective_from: date
    input_usd_per_1m: float
    output_usd_per_1m: float
    cached_input_usd_per_1m: float


@dataclass(frozen=True)
class ToolRequirement:
    """A rule: requests of ``task_type`` (and ``intent``, empty = any) need ``tool_name``."""

    task_type: str
    intent: str
    tool_name: str
    description: str


def seeds_dir() -> Path:
    """The seed folder: ``$TRACEHOUSE_SEEDS_DIR``, else ``<dbt project>/seeds``."""
    env = os.environ.get("TRACEHOUSE_SEEDS_DIR")
    if env:
        return Path(env)
    from tracehouse.warehouse import project_dir

    return project_dir() / "seeds"


def _rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise SeedError(f"seed file not found: {path}")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != columns:
            raise SeedError(f"{path}: columns {reader.fieldnames}, expected {list(columns)}")
        return list(reader)


def read_model_prices(folder: Path | None = None) -> tuple[ModelPrice, ...]:
    """The rows of ``model_prices.csv`` (a clear `SeedError` for a bad file or row)."""
    path = (folder or seeds_dir()) / MODEL_PRICES_FILE
    out = []
    for i, r in enumerate(_rows(path, MODEL_PRICES_COLUMNS), start=2):
        try:
            out.append(ModelPrice(
                r["model_name"], r["model_provider"], date.fromisoformat(r["effective_from"]),
                float(r["input_usd_per_1m"]), float(r["output_usd_per_1m"]),
                float(r["cached_input_usd_per_1m"]),
            ))
        except ValueError as exc:
            raise SeedError(f"{path} line {i}: {exc}") from None
    if not out:
        raise SeedError(f"{path}: no prices")
    return tuple(out)


def read_tool_requirements(folder: Path | None = None) -> tuple[ToolRequirement, ...]:
    """The rows of ``tool_requirements.csv``."""
    path = (folder or seeds_dir()) / TOOL_REQUIREMENTS_FILE
    return tuple(ToolRequirement(r["task_type"], r["intent"] or "", r["tool_name"],
                                 r["description"])
                 for r in _rows(path, TOOL_REQUIREMENTS_COLUMNS))
