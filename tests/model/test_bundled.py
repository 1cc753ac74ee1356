"""The bundled model ships: a missing one fails the suite (other tests skip without it)."""

import json

from fetalhc.inference.segmenter import DEFAULT_MODEL
from fetalhc.measure.quality import QualityThresholds
from fetalhc.measure.uncertainty import IntervalCalibration


def test_the_bundled_model_its_flag_and_its_intervals_are_installed():
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size > 1_000_000
    config = json.loads((DEFAULT_MODEL.parent / "config.json").read_text())
    thresholds = QualityThresholds.from_dict(config["quality"])
    assert thresholds.max_pass_distance_mm < 5  # a tuned flag, not the defaults
    calibration = IntervalCalibration.from_dict(config["intervals"])
    assert calibration.level == 0.95 and set(calibration.measures) == {"hc_mm", "bpd_mm", "ofd_mm"}
