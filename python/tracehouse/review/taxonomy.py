"""The failure taxonomy: the codes a human label may use, read from the dbt seed."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pv

from tracehouse.errors import TracehouseError

SEED_RELATIVE = Path("seeds") / "failure_taxonomy.csv"


class UnknownCategoryError(TracehouseError, ValueError):
    """A failure category that the taxonomy does not define; the message lists the valid ones."""


def taxonomy_path(path: Path | str | None = None) -> Path:
    """The taxonomy seed: ``path`` if given, else ``seeds/failure_taxonomy.csv`` of the project."""
    if path is not None:
        return Path(path)
    from tracehouse.warehouse import project_dir

    return project_dir() / SEED_RELATIVE


def load_taxonomy(path: Path | str | None = None) -> dict[str, str]:
    """``{failure_category: description}`` of the seed, in the seed's order."""
    table = pv.read_csv(taxonomy_path(path))
    codes = table.column("failure_category").to_pylist()
    descriptions = table.column("description").to_pylist()
    return dict(zip(codes, descriptions, strict=True))


def check_category(code: str, taxonomy: dict[str, str]) -> str:
    """``code`` if the taxonomy has it, else :class:`UnknownCategoryError` listing the codes."""
    if code in taxonomy:
        return code
    valid = "\n".join(f"  {c:<28} {d}" for c, d in taxonomy.items())
    raise UnknownCategoryError(f"unknown failure category {code!r}; valid codes:\n{valid}")
