"""Detection over published metric series: change points (and, later, the job and alerts)."""

from tracehouse.detect.changepoint import ALGORITHM_NAME, ChangePoint, change_points, detect

__all__ = ["ALGORITHM_NAME", "ChangePoint", "change_points", "detect"]
