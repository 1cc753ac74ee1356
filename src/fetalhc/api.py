"""Library entry points beside the CLI commands (as nnU-Net keeps an entry function beside
each library function): train and evaluate from Python, returning values; writing files
is a separate, explicit step."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.inference.evaluate import (
    EvalOptions,
    EvaluationRows,
    evaluate_records,
    evaluation_rows,
    select_records,
)
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.training.config import TrainConfig


def train(config: TrainConfig, out: str | os.PathLike, resume: bool = False) -> dict:
    """Train on an HC18 folder + split CSV (`config.data`, `config.split`) into `out`."""
    from fetalhc.training.trainer import Trainer

    return Trainer(config, out, resume=resume).run()


def train_on_arrays(
    config: TrainConfig,
    out: str | os.PathLike,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    val_images: Sequence[np.ndarray] | None = None,
    val_masks: Sequence[np.ndarray] | None = None,
) -> dict:
    """Train on images and 0/1 head masks held in memory (any data set, not only HC18)."""
    from fetalhc.training.datasets import training_set_from_arrays
    from fetalhc.training.trainer import Trainer

    train_set = training_set_from_arrays(config, images, masks)
    val_set = None
    if val_images is not None:
        if val_masks is None:
            raise FetalHCError("val_images given without val_masks")
        val_set = training_set_from_arrays(config, val_images, val_masks)
    return Trainer(config, out).run(datasets=(train_set, val_set))


def evaluate_rows(
    checkpoint: str | os.PathLike | HeadMeasurer,
    data: str | os.PathLike,
    split: str | os.PathLike | None = None,
    part: str = "test",
) -> EvaluationRows:
    """Score a model on labelled HC18 images; returns per-image rows (nothing written)."""
    measurer = checkpoint if isinstance(checkpoint, HeadMeasurer) else HeadMeasurer(checkpoint)
    records, skipped = select_records(data, split, part)
    return evaluation_rows(measurer, records, skipped=skipped)


def write_evaluation(
    checkpoint: str | os.PathLike | HeadMeasurer,
    data: str | os.PathLike,
    out: str | os.PathLike,
    split: str | os.PathLike | None = None,
    part: str = "test",
) -> dict:
    """Evaluate and write per_image.csv, summary.json/md and the worst overlays to `out`."""
    measurer = checkpoint if isinstance(checkpoint, HeadMeasurer) else HeadMeasurer(checkpoint)
    records, skipped = select_records(data, split, part)
    return evaluate_records(measurer, records, Path(out), EvalOptions(part=part), skipped)
