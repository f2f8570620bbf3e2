"""Segment keys as sets of `dim=value` pairs: parsing, dimensions, and which segments overlap.

A segment key is the contract's `all` or `dim=value` pairs joined with `|`. Two segments
*overlap* (may share traffic) unless they give the same dimension different values:
`route_name=standard` overlaps `all`, `task_type=qa` and `model_name=nimbus-pro`, but not
`route_name=cheap`. Attribution, evaluation and the alert rules all use this one relation.
"""

from __future__ import annotations

ALL = "all"


def parse_segment(segment_key: str) -> dict[str, str]:
    """Return the `{dim: value}` pairs of a segment key (empty for `all`)."""
    if not segment_key or segment_key == ALL:
        return {}
    pairs: dict[str, str] = {}
    for part in segment_key.split("|"):
        dim, _, value = part.partition("=")
        pairs[dim] = value
    return pairs


def segment_dims(segment_key: str) -> str:
    """Return the dimension part of a key: `route_name` for `route_name=cheap`, `all` for all."""
    dims = sorted(parse_segment(segment_key))
    return "|".join(dims) if dims else ALL


def overlaps(a: str, b: str) -> bool:
    """Return True unless the two segments give one dimension different values."""
    pa_, pb = parse_segment(a), parse_segment(b)
    return all(pb[d] == v for d, v in pa_.items() if d in pb)


def is_within(child: str, parent: str) -> bool:
    """Return True if every pair of `parent` is in `child` (so `child` is a subset of it)."""
    pc, pp = parse_segment(child), parse_segment(parent)
    return all(pc.get(d) == v for d, v in pp.items())
