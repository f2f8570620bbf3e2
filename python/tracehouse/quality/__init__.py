"""Data quality: GX suites over new lake batches (warn) and the marts (fail), results, Data Docs."""

from tracehouse.quality.checks import QualityError, QualityRun

__all__ = ["QualityError", "QualityRun"]
