from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetalhc.sample import sample_dir


@pytest.fixture(scope="session")
def sample() -> Path:
    return sample_dir()


@pytest.fixture(scope="session")
def head(sample: Path) -> np.ndarray:
    """A sample head (180_HC.png: HC18's pixel size 0.134 mm) as 8-bit grey."""
    return cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="session")
def measurer():
    """The bundled model, loaded once for the session (PyTorch)."""
    from fetalhc.inference.measurer import HeadMeasurer

    return HeadMeasurer(backend="torch")


@pytest.fixture()
def sample_copy(tmp_path: Path, sample: Path) -> Path:
    dest = tmp_path / "hc18"
    shutil.copytree(sample, dest)
    return dest


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real `fetalhc` entry point in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "fetalhc.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="session")
def sample_split(tmp_path_factory, sample: Path) -> Path:
    from fetalhc.data.hc18 import load_labelled
    from fetalhc.data.split import group_split, write_split

    path = tmp_path_factory.mktemp("split") / "split.csv"
    names = [r.filename for r in load_labelled(sample)]
    write_split(path, group_split(names, val=0.2, test=0.2, seed=0))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, sample: Path, sample_split: Path) -> Path:
    """A run trained for 2 epochs at 96x64 on the sample (random encoder: no download)."""
    from fetalhc.training.config import TrainConfig
    from fetalhc.training.trainer import Trainer

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = TrainConfig(
        data=str(sample),
        split=str(sample_split),
        strategy="decoder",
        encoder_weights="none",
        epochs=2,
        batch_size=4,
        lr=1e-3,
        image_size=[96, 64],
    )
    Trainer(config, out).run()
    return out


def tiny_config(sample: Path, split: Path, **changes):
    """A TrainConfig small enough to train in seconds on the sample: 1 epoch, 96x64, no
    pretrained weights, a narrow decoder unless `changes` say otherwise."""
    from fetalhc.training.config import TrainConfig

    base = dict(
        data=str(sample),
        split=str(split),
        encoder_weights="none",
        epochs=1,
        batch_size=4,
        image_size=[96, 64],
        decoder_channels=[64, 32, 16, 16, 8],
    )
    return TrainConfig(**{**base, **changes})
