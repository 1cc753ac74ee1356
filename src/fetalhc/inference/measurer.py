"""The one segment-and-measure path: image in, ellipse, HC and GA in mm out.

`HeadMeasurer` is loaded once (like nnU-Net's predictor) and used by the Python API,
`fetalhc predict`, `fetalhc evaluate` and the web service::

    import fetalhc
    measurer = fetalhc.HeadMeasurer()                  # the bundled model
    result = measurer.measure("001_HC.png", pixel_size_mm=0.12)
    result.hc_mm, result.ga_weeks, result.quality
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError, Status
from fetalhc.inference.derive import image_features, result_from_measurement
from fetalhc.inference.ensemble import MeanOfModels
from fetalhc.inference.frames import (
    FramesMeasurement,
    choose_frame,
    frame_plan,
    settle_frames,
)
from fetalhc.inference.result import (
    BIOMETRY_KEYS,
    BLANK_RANGE,
    HC18_KEYS,
    MM_KEYS,
    QUALITY_FEATURES,
    RANGE_KEYS,
    ROW_COLUMNS,
    HeadMeasurement,
    overlay_picture,
)
from fetalhc.inference.segmenter import Segmenter, default_checkpoint
from fetalhc.io.dicom import cine_frames, read_dicom
from fetalhc.io.images import read_gray
from fetalhc.io.pixel_size import PixelSize
from fetalhc.io.pixels import to_gray_uint8
from fetalhc.measure.postprocess import measure
from fetalhc.measure.quality import QualityThresholds
from fetalhc.measure.uncertainty import IntervalCalibration
from fetalhc.model.checkpoint import resolve_checkpoint

# The result type, the frame choice and the derivation live in their own modules; these
# names stay importable from here, where callers have always found them.
__all__ = [
    "BIOMETRY_KEYS",
    "BLANK_RANGE",
    "HC18_KEYS",
    "MM_KEYS",
    "QUALITY_FEATURES",
    "RANGE_KEYS",
    "ROW_COLUMNS",
    "FramesMeasurement",
    "HeadMeasurement",
    "HeadMeasurer",
    "PixelSize",
    "choose_frame",
    "cine_frames",
    "frame_plan",
    "image_features",
    "measure_image",
    "overlay_picture",
    "result_from_measurement",
    "settle_frames",
]

log = logging.getLogger(__name__)
ImageLike = str | os.PathLike | np.ndarray


class HeadMeasurer:
    """A model loaded once: segment fetal heads and measure them.

    checkpoint: a run's `best.safetensors` (with its config.json), a run or model folder
    (`fetalhc bundle`), an exported `.onnx`, or None for the bundled model. backend:
    auto | torch | onnx. flip_tta averages the prediction with that of the mirrored image.
    locate_side: a two-pass model's first pass at another square side (a multiple of 32;
    it only has to find the head). quality: the flag's thresholds instead of the model's
    own (config.json "quality"; names as `QualityThresholds`). average: other models
    (files or folders) whose head probabilities are averaged with `checkpoint`'s, pass by
    pass (`MeanOfModels`: the flag and intervals stay the first model's). segmenter:
    anything with a Segmenter's `predict(images)`, `batch_size`, `checkpoint(s)` and
    `config` (a test double) instead of loading `checkpoint`.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        backend: str = "auto",
        threads: int = 0,
        batch_size: int = 8,
        flip_tta: bool = False,
        locate_side: int | None = None,
        quality: dict | None = None,
        segmenter=None,
        average: Sequence[str | os.PathLike] = (),
    ) -> None:
        if segmenter is None:
            members = [
                Segmenter(
                    _checkpoint_file(c),
                    backend=backend,
                    threads=threads,
                    batch_size=batch_size,
                    flip_tta=flip_tta,
                    locate_side=locate_side,
                )
                for c in [checkpoint, *average]
            ]
            segmenter = MeanOfModels(members) if average else members[0]
        self.segmenter = segmenter
        config = segmenter.config if isinstance(segmenter.config, dict) else {}
        # the model's settings, read and checked once, at load
        own = config.get("quality")
        self.thresholds = self._thresholds(quality if quality is not None else own)
        self.intervals = self._intervals(config)
        self.offset_mm = self._offset_mm(config)

    @classmethod
    def from_segmenter(cls, segmenter, quality: dict | None = None) -> HeadMeasurer:
        """A measurer around an already built segmenter (see `segmenter`)."""
        return cls(segmenter=segmenter, quality=quality)

    def _offset_mm(self, config: dict) -> float:
        """An adapted model's calliper convention (config.json "adaptation"), 0 without;
        a model its gate did not promote is said so once, at load."""
        adaptation = config.get("adaptation")
        if not isinstance(adaptation, dict):
            return 0.0
        if adaptation.get("promoted") is False:
            log.warning(
                "fetalhc: WARNING: %s was not promoted by its gate (%s)",
                self.model_name,
                adaptation.get("reason", "no reason recorded"),
            )
        offset = adaptation.get("offset_mm", 0.0)
        if isinstance(offset, bool) or not isinstance(offset, int | float) or abs(offset) > 10:
            raise FetalHCError(f"{self.model_name}: config.json: offset_mm {offset!r}")
        return float(offset)

    def _intervals(self, config: dict) -> IntervalCalibration | None:
        """The model's interval calibration (config.json "intervals"), if it has one."""
        section = config.get("intervals")
        if not section:
            return None
        try:
            return IntervalCalibration.from_dict(section)
        except ValueError as exc:
            raise FetalHCError(f"{self.model_name}: config.json: {exc}") from None

    def _thresholds(self, quality) -> QualityThresholds:
        """The quality flag's thresholds from a mapping of `QualityThresholds`' names (the
        defaults for what it leaves out, or without one)."""
        try:
            return QualityThresholds.from_dict(quality if isinstance(quality, dict) else {})
        except ValueError as exc:
            raise FetalHCError(f"{self.model_name}: config.json: {exc}") from None

    @property
    def batch_size(self) -> int:
        return self.segmenter.batch_size

    @property
    def model_name(self) -> str:
        return self.segmenter.checkpoint.name

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Head probability maps at each image's own size (8-bit grey images in)."""
        return self.segmenter.probabilities(images)

    def measure(
        self,
        image: ImageLike,
        pixel_size_mm: float | None = None,
        name: str | None = None,
        ga_weeks: float | None = None,
    ) -> HeadMeasurement:
        """Measure one image (a path or an array: grey or colour, 8/16-bit).

        An image that cannot be read or holds no head gives a result whose `status` says
        why; a bad argument raises FetalHCError."""
        names = [name] if name else None
        return next(iter(self.measure_many([image], [pixel_size_mm], names, ga_weeks=ga_weeks)))

    def measure_many(
        self,
        images: Iterable[ImageLike],
        pixel_sizes_mm: Iterable[PixelSize | float | None] | PixelSize | float | None = None,
        names: Iterable[str] | None = None,
        threshold: float = 0.5,
        keep_logits: bool = False,
        ga_weeks: float | Iterable[float | None] | None = None,
    ) -> Iterator[HeadMeasurement]:
        """Measure many images, batch by batch, yielding one result per image in order.
        One bad image gives its own status; the others are measured. `pixel_sizes_mm`: one
        for all or one per image, in mm or as a `PixelSize` (a DICOM header's, whose
        regions decide where the head lies). `ga_weeks`: one known gestational age for all,
        or one per image (None where unknown)."""
        images = list(images)
        one = (PixelSize, float, int, str, Decimal)
        if pixel_sizes_mm is None or isinstance(pixel_sizes_mm, one):
            sizes = [pixel_sizes_mm] * len(images)
        else:
            sizes = list(pixel_sizes_mm)
        sizes = [PixelSize.of(v) for v in sizes]
        if len(sizes) != len(images):
            raise FetalHCError(f"{len(images)} images but {len(sizes)} pixel sizes")
        if ga_weeks is None or isinstance(ga_weeks, int | float):
            gas = [ga_weeks] * len(images)
        else:
            gas = list(ga_weeks)
        if len(gas) != len(images):
            raise FetalHCError(f"{len(images)} images but {len(gas)} gestational ages")
        labels = (
            list(names) if names is not None else [_name_of(im, i) for i, im in enumerate(images)]
        )
        for start in range(0, len(images), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(images)))
            yield from self._measure_batch(
                [images[i] for i in chunk],
                [sizes[i] for i in chunk],
                [labels[i] for i in chunk],
                threshold,
                keep_logits,
                [gas[i] for i in chunk],
            )

    def measure_frames(
        self,
        frames: Sequence[np.ndarray],
        pixel_size_mm: PixelSize | float | None,
        name: str,
        ga_weeks: float | None = None,
    ) -> FramesMeasurement:
        """A cine loop (or one image, as a list of one frame): its frames measured (every
        frame up to CINE_MAX_FRAMES, else a stride), named `<name>#<frame>`, and the one
        chosen by quality (`choose_frame`)."""
        plan = frame_plan(len(frames), name)
        results = self.measure_many(
            [frames[(k or 1) - 1] for k, _ in plan],
            [pixel_size_mm] * len(plan),
            [label for _, label in plan],
            ga_weeks=ga_weeks,
        )
        return settle_frames(list(results), plan)

    def measure_dicom(
        self, path: str | os.PathLike, pixel_size_mm: float | None = None, ga_weeks=None
    ) -> FramesMeasurement:
        """A DICOM image or cine loop from a file; the pixel size from its header unless
        given. Its header is kept in `.dataset` for `to_dicom_sr` and friends."""
        dcm = read_dicom(path, cine=True)
        # the header's size (its regions decide where the head lies) unless one is given
        size = PixelSize.of(pixel_size_mm) if pixel_size_mm is not None else dcm.pixel_size
        measured = self.measure_frames(dcm.frames, size, Path(path).name, ga_weeks)
        return replace(measured, dataset=dcm.dataset)

    def _measure_batch(
        self,
        images: list[ImageLike],
        sizes: list[PixelSize],
        names: list[str],
        threshold: float = 0.5,
        keep_logits: bool = False,
        gas: list[float | None] | None = None,
    ) -> list[HeadMeasurement]:
        results: list[HeadMeasurement | None] = [None] * len(images)
        gas = gas if gas is not None else [None] * len(images)
        decoded: list[tuple[int, np.ndarray]] = []
        for i, image in enumerate(images):
            try:
                gray = _as_gray(image)
            except Exception as exc:  # noqa: BLE001 - any library's refusal is this image's row
                if not isinstance(exc, ValueError):
                    exc = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160]}"
                results[i] = HeadMeasurement(names[i], Status.UNREADABLE, str(exc))
                continue
            if int(gray.max()) - int(gray.min()) < BLANK_RANGE:
                # Nothing to measure, and a network shown an empty frame may still "see"
                # a head (the two-pass model does, in black or white frames).
                results[i] = HeadMeasurement(
                    names[i],
                    Status.NO_HEAD,
                    pixel_size_mm=sizes[i].mm,
                    pixel_size_source=sizes[i].source,
                    quality_reasons=["the image is blank (almost uniform grey)"],
                    mask=np.zeros(gray.shape, np.uint8),
                    image=gray,
                )
                continue
            decoded.append((i, gray))
        if decoded:
            try:
                predictions = self.segmenter.predict([im for _, im in decoded])
            except Exception as exc:  # noqa: BLE001 - a model/input mismatch of any kind
                predictions = None
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                for i, _ in decoded:
                    results[i] = HeadMeasurement(names[i], Status.ERROR, error)
            if predictions is not None:
                for (i, image), p in zip(decoded, predictions, strict=True):
                    m = measure(
                        p.probability_map, threshold, coarse=p.coarse_map, other_view=p.other_view
                    )
                    result = result_from_measurement(
                        names[i],
                        m,
                        sizes[i],
                        gas[i],
                        self.thresholds,
                        image_features(image, m.ellipse),
                        image,
                        self.intervals,
                        self.offset_mm,
                    )
                    if keep_logits:
                        result = replace(result, logits=p.logits_small)
                    results[i] = result
        return [r for r in results if r is not None]


def _checkpoint_file(checkpoint: str | os.PathLike | None) -> Path:
    """A checkpoint file from what a caller names: a file, a run or model folder, or None
    (the bundled model)."""
    if checkpoint is None:
        return default_checkpoint()
    if Path(checkpoint).is_dir():
        return resolve_checkpoint(checkpoint, None)
    return Path(checkpoint)


def _name_of(image: ImageLike, index: int) -> str:
    return Path(image).name if not isinstance(image, np.ndarray) else f"image_{index}"


def _as_gray(image: ImageLike) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"expected a 2D image array, got shape {image.shape}")
        return to_gray_uint8(image)
    return read_gray(image)  # PNG, JPEG, ... or DICOM


def measure_image(
    image: ImageLike,
    pixel_size_mm: float | None = None,
    checkpoint: str | None = None,
    ga_weeks: float | None = None,
) -> HeadMeasurement:
    """One call: load the (bundled) model and measure one image. Use `HeadMeasurer` to
    measure many images without reloading the model."""
    return HeadMeasurer(checkpoint).measure(image, pixel_size_mm, ga_weeks=ga_weeks)
