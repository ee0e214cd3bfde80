"""Statistical detection of deploy-linked error anomalies, as pure functions on pandas frames."""

from detector.model.config import KINDS, DetectorConfig
from detector.model.detect import DetectorInputError, detect_anomalies
from detector.model.findings import Finding
from detector.model.segments import segments_over_represented
from detector.model.series import PoissonCusum, score_series

__all__ = [
    "KINDS",
    "DetectorConfig",
    "DetectorInputError",
    "Finding",
    "PoissonCusum",
    "detect_anomalies",
    "score_series",
    "segments_over_represented",
]
