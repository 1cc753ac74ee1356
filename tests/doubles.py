"""Measurer doubles with the real interface: a real `HeadMeasurer` around a `Segmenter`
whose network is a plain function (the service's own behaviour is what is under test)."""

from __future__ import annotations

import threading

import numpy as np

from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import Segmenter


def no_head(x: np.ndarray) -> np.ndarray:
    """A network that sees no head anywhere."""
    return np.full((x.shape[0], 1, *x.shape[2:]), -30.0, np.float32)


class BrightnessNetwork:
    """A network that calls bright pixels head: logit = (input - 0.5) * gain on the
    unit-normalised input (any error then comes from the geometry around it). It records
    the shape of every batch it is run on."""

    def __init__(self, gain: float = 40.0) -> None:
        self.gain = gain
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(x.shape)
        return ((x[:, :1] - 0.5) * self.gain).astype(np.float32)


def double_segmenter(
    network=no_head,
    name: str = "double",
    size: int = 64,
    head_crop: float = 0.0,
    quality: dict | None = None,
    batch_size: int = 8,
    **options,
) -> Segmenter:
    """A Segmenter around `network`, its config as a model's would be (a square `size`,
    unit-normalised input, `head_crop` for two passes, `quality` its flag's thresholds)."""
    config: dict = {"model": {"image_size": [size, size], "normalization": "unit"}}
    config["model"]["head_crop"] = head_crop
    if quality is not None:
        config["quality"] = quality
    return Segmenter(name, batch_size=batch_size, runner=network, config=config, **options)


def instant_measurer() -> HeadMeasurer:
    """Answers at once: every image measured by a 64x64 network that finds no head."""
    return HeadMeasurer(segmenter=double_segmenter())


class NeverMeasures(HeadMeasurer):
    """For requests that must be answered before anything is measured."""

    def __init__(self) -> None:
        super().__init__(segmenter=double_segmenter())

    def measure_many(self, *args, **kwargs):
        raise AssertionError("a request that should have been refused reached the measurer")


class SlowMeasurer(HeadMeasurer):
    """Stands in for a model that takes a while, to fill the queue: measures once
    `release` is set (or after 10 s)."""

    def __init__(self) -> None:
        super().__init__(segmenter=double_segmenter(name="slow"))
        self.release = threading.Event()

    def measure_many(self, *args, **kwargs):
        self.release.wait(10)
        return super().measure_many(*args, **kwargs)
