"""The event contract v1 as code: schemas, enums, attribute keys, and the batch validator."""

from tracehouse.contract.schemas import *  # noqa: F403
from tracehouse.contract.schemas import DATASETS, DatasetSpec
from tracehouse.contract.validate import REJECT_REASON, ValidationResult, validate_table

__all__ = ["DATASETS", "REJECT_REASON", "DatasetSpec", "ValidationResult", "validate_table"]
