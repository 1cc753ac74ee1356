"""Models averaged at inference (`--average`, `HeadMeasurer(average=...)`)."""

from __future__ import annotations

import numpy as np
import pytest

from fetalhc.errors import FetalHCError
from fetalhc.inference.ensemble import MeanOfModels
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import DEFAULT_MODEL, sigmoid
from tests.conftest import run_cli
from tests.doubles import BrightnessNetwork, double_segmenter


def test_the_average_is_the_mean_of_the_members_probabilities():
    image = np.tile(np.linspace(0, 255, 128, dtype=np.float32), (96, 1)).astype(np.uint8)
    steep, gentle = (double_segmenter(BrightnessNetwork(g), f"gain{g}") for g in (40.0, 4.0))
    [mean] = MeanOfModels([steep, gentle]).predict([image])
    [a], [b] = steep.predict([image]), gentle.predict([image])
    assert not np.allclose(a.probability, b.probability)  # the members differ
    np.testing.assert_allclose(mean.probability, (a.probability + b.probability) / 2, atol=1e-6)
    np.testing.assert_allclose(mean.logits_small, (a.logits_small + b.logits_small) / 2)
    assert mean.coarse_probability is None  # one-pass members: no first pass to average
    # a pixel just above mid-grey: the steep member is sure, the gentle one is not, and
    # the average is as unsure as their mean (0.5 + (p_a - 0.5) / 2 + (p_b - 0.5) / 2)
    grey = 80 / 127 - 0.5
    p_a, p_b = sigmoid(np.float32(40 * grey)), sigmoid(np.float32(4 * grey))
    assert p_a > 0.9 and p_b < 0.7
    assert mean.probability[0, 80] == pytest.approx((p_a + p_b) / 2, abs=0.02)
    with pytest.raises(FetalHCError, match="two models"):
        MeanOfModels([steep])


def test_a_model_averaged_with_itself_measures_as_itself(head):
    alone = HeadMeasurer(backend="torch").measure(head, 0.134)
    twice = HeadMeasurer(backend="torch", average=[DEFAULT_MODEL])
    assert [c.name for c in twice.segmenter.checkpoints] == [DEFAULT_MODEL.name] * 2
    twice = twice.measure(head, 0.134)
    assert twice.ok and twice.hc_mm == pytest.approx(alone.hc_mm, abs=1e-6)
    assert twice.quality_reasons == alone.quality_reasons


def test_evaluating_an_average_needs_its_own_output_folder(sample):
    model = str(DEFAULT_MODEL.parent)
    r = run_cli("evaluate", "--data", str(sample), "--model", model, "--average", model)
    assert r.returncode == 2 and "--average: give --out" in r.stderr
