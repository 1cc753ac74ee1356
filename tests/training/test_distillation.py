"""TrainConfig.teachers: distillation as soft targets from frozen teacher checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fetalhc.errors import FetalHCError
from fetalhc.training.config import config_from_mapping
from fetalhc.training.loop import distilled
from fetalhc.training.trainer import Trainer
from tests.conftest import tiny_config


class Constant(nn.Module):
    """A 'teacher' whose logit is the same everywhere."""

    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, *x.shape[2:]), self.logit)


def test_the_target_mixes_the_mask_and_the_teachers_mean_probability():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.zeros(2, 1, 8, 8)
    y[:, :, :4] = 1.0
    # two teachers: probabilities 0.5 and sigmoid(ln 3) = 0.75 -> mean 0.625
    teachers = [Constant(0.0), Constant(float(torch.log(torch.tensor(3.0))))]
    ((_, target),) = distilled([(x, y)], teachers, 0.4, torch.device("cpu"))
    assert target[:, :, :4].flatten().tolist() == pytest.approx([0.6 + 0.4 * 0.625] * 64)
    assert target[:, :, 4:].flatten().tolist() == pytest.approx([0.4 * 0.625] * 64)
    ((_, same),) = distilled([(x, y)], teachers, 0.0, torch.device("cpu"))
    assert torch.equal(same, y)  # weight 0: the plain recipe


def test_a_student_trains_on_a_teacher_and_records_it(tmp_path, sample, sample_split):
    Trainer(tiny_config(sample, sample_split), tmp_path / "teacher").run()
    teacher = str(tmp_path / "teacher" / "best.safetensors")
    config = tiny_config(
        sample,
        sample_split,
        teachers=[teacher],
        teacher_weight=0.7,
        decoder_channels=[32, 16, 16, 8, 8],
    )
    result = Trainer(config, tmp_path / "student").run()
    assert result["epochs"] == 1
    recorded = json.loads((tmp_path / "student" / "config.json").read_text())["train"]
    assert recorded["teachers"] == [teacher] and recorded["teacher_weight"] == 0.7
    bad = tiny_config(sample, sample_split, teachers=[teacher], normalization="unit")
    with pytest.raises(FetalHCError, match="normalization"):
        Trainer(bad, tmp_path / "refused").run()
    assert not (tmp_path / "refused").exists()  # refused before anything was written
    with pytest.raises(FetalHCError, match="teacher_weight"):
        config_from_mapping({"teacher_weight": 1.5}).validate()
