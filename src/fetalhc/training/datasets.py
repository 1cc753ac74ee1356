"""Training data: decoded and resized once (cached in memory), augmented cheaply per epoch."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from tqdm import tqdm

from fetalhc.data.hc18 import Record, load_mask
from fetalhc.errors import FetalHCError
from fetalhc.io.images import read_gray
from fetalhc.io.pixels import to_gray_uint8
from fetalhc.model.preprocess import preprocess
from fetalhc.training.config import TrainConfig

log = logging.getLogger(__name__)


class CachedSet:
    """Images and soft masks at model size, uint8, decoded once.

    The mask is resized with area interpolation and kept soft (0-255 = fraction of the
    pixel inside the reference ellipse), so the BCE target carries the sub-pixel boundary.
    """

    def __init__(self, records: Sequence[Record], size_wh: tuple[int, int], desc: str = "cache"):
        w, h = size_wh
        images, masks, kept = [], [], []
        self.skipped: list[str] = []
        for rec in tqdm(list(records), desc=desc, leave=False, unit="img"):
            try:
                image = read_gray(rec.image_path)
                mask = load_mask(rec).astype(np.float32)
            except ValueError as exc:  # one bad file is reported and skipped
                self.skipped.append(f"{rec.filename}: {exc}")
                log.warning("skipped %s: %s", rec.filename, exc)
                continue
            images.append(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))
            soft = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
            masks.append(np.round(soft * 255).astype(np.uint8))
            kept.append(rec)
        if not kept:
            raise FetalHCError(f"{desc}: no readable image")
        self.records = kept
        self.images = np.stack(images)
        self.masks = np.stack(masks)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_arrays(
        cls,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        size_wh: tuple[int, int],
    ) -> CachedSet:
        """Training data from arrays: grey (or colour, any bit depth) images and 0/1 head
        masks of the same size, e.g. from another data set than HC18."""
        if len(images) != len(masks) or not images:
            raise FetalHCError(f"{len(images)} images but {len(masks)} masks")
        w, h = size_wh
        out = cls.__new__(cls)
        out.skipped, out.records = [], []
        small, soft = [], []
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            gray = to_gray_uint8(np.asarray(image))
            mask = np.asarray(mask, dtype=np.float32)
            if mask.shape != gray.shape:
                raise FetalHCError(f"image {i}: mask {mask.shape} != image {gray.shape}")
            small.append(cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA))
            resized = cv2.resize(
                (mask > 0.5).astype(np.float32), (w, h), interpolation=cv2.INTER_AREA
            )
            soft.append(np.round(resized * 255).astype(np.uint8))
        out.images, out.masks = np.stack(small), np.stack(soft)
        return out


def paper_augmentation(seed: int) -> A.Compose:
    """The paper's augmentation: rotate ±25°, horizontal flip 0.5, vertical flip 0.1."""
    return A.Compose(
        [
            A.Rotate(limit=25, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=1.0),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.1),
        ],
        seed=seed,
    )


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of one epoch's shuffling and augmentation: independent of resume points."""
    return (seed * 1_000_003 + epoch * 7919) % (2**31)


def iterate_batches(
    data: CachedSet,
    batch_size: int,
    seed: int | None = None,
    augment: bool = False,
    indices: Sequence[int] | None = None,
    normalization: str = "imagenet",
    strong: bool = False,
):
    """Yield (input, target) tensors; shuffled and augmented when a seed is given (with
    `strong`, also brightness, contrast and gamma)."""
    idx = np.arange(len(data)) if indices is None else np.asarray(indices)
    aug = intensity = None
    if seed is not None:
        idx = idx[np.random.default_rng(seed).permutation(len(idx))]
        if augment:
            aug = paper_augmentation(seed)
        intensity = intensity_augmentation(seed) if augment and strong else None
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        images, masks = data.images[chunk], data.masks[chunk]
        if aug is not None:
            pairs = [aug(image=im, mask=mk) for im, mk in zip(images, masks, strict=True)]
            images = np.stack([p["image"] for p in pairs])
            masks = np.stack([p["mask"] for p in pairs])
            if intensity is not None:
                images = np.stack([intensity(image=im)["image"] for im in images])
        x = torch.from_numpy(preprocess(images, normalization))
        y = torch.from_numpy(masks.astype(np.float32)[:, None] / 255.0)
        yield x, y


# ---------------------------------------------------------------- head-crop training
# Share of whole (letterboxed) images among the crops: what the first, locating pass sees.
WHOLE_IMAGE_SHARE = 0.25


class FullSet:
    """Images and 0/255 masks at their own size (for head-crop training, which cuts a new
    square crop of each image every epoch), with each reference head's bounding box."""

    def __init__(self, records: Sequence[Record], desc: str = "cache"):
        self._start()
        for rec in tqdm(list(records), desc=desc, leave=False, unit="img"):
            try:
                self._add(read_gray(rec.image_path), load_mask(rec))
            except ValueError as exc:  # one bad file is reported and skipped
                self.skipped.append(f"{rec.filename}: {exc}")
                log.warning("skipped %s: %s", rec.filename, exc)
                continue
            self.records.append(rec)
        if not self.records:
            raise FetalHCError(f"{desc}: no readable image")

    def _start(self) -> None:
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        self.records: list[Record] = []
        self.skipped: list[str] = []

    def _add(self, gray: np.ndarray, mask: np.ndarray) -> None:
        """Keep one image with its head mask (> 0.5 is head); ValueError if they differ in
        size or the mask holds no head."""
        from fetalhc.model.crops import box_of

        binary = (np.asarray(mask, dtype=np.float32) > 0.5).astype(np.uint8) * 255
        box = box_of(binary)
        if binary.shape != gray.shape or box is None:
            raise ValueError(f"mask {binary.shape} != image {gray.shape} or empty")
        self.images.append(gray)
        self.masks.append(binary)
        self.boxes.append(box)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> FullSet:
        """Images (grey or colour, any bit depth) and 0/1 head masks of the same size."""
        if len(images) != len(masks) or not images:
            raise FetalHCError(f"{len(images)} images but {len(masks)} masks")
        out = cls.__new__(cls)
        out._start()
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            try:
                out._add(to_gray_uint8(np.asarray(image)), mask)
            except ValueError as exc:
                raise FetalHCError(f"image {i}: {exc}") from None
        return out


def intensity_augmentation(seed: int) -> A.Compose:
    """Contrast, brightness and gamma: ultrasound gain and dynamic range vary by machine."""
    return A.Compose(
        [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.25, p=0.6),
            A.RandomGamma(gamma_limit=(70, 150), p=0.5),
        ],
        seed=seed,
    )


def sample_square(box, shape_hw, rng: np.random.Generator):
    """A random training square: the whole image now and then (the locating pass), else a
    square around the head with a random margin and offset (the outlining pass, whose
    crop comes from an imperfect first pass)."""
    from fetalhc.model.crops import Square, around_box, whole_image

    if rng.random() < WHOLE_IMAGE_SHARE:
        s = whole_image(shape_hw)
        jitter = rng.uniform(-0.05, 0.05, 2) * s.side
        return Square(s.cx + jitter[0], s.cy + jitter[1], s.side * rng.uniform(0.9, 1.1))
    s = around_box(box, rng.uniform(0.05, 0.4))
    size = max(box[2] - box[0], box[3] - box[1])
    jitter = rng.uniform(-0.08, 0.08, 2) * size
    return Square(s.cx + jitter[0], s.cy + jitter[1], s.side)


def head_crop_pair(
    data: FullSet, index: int, out: int, square, angle: float = 0.0, hflip=False, vflip=False
) -> tuple[np.ndarray, np.ndarray]:
    """One crop of an image and its soft mask (0-255)."""
    from fetalhc.model.crops import crop_matrix, cut

    m = crop_matrix(square, out, angle, hflip, vflip)
    return cut(data.images[index], m, out), cut(data.masks[index], m, out)


def iterate_crop_batches(
    data: FullSet,
    batch_size: int,
    out: int,
    margin: float,
    seed: int | None = None,
    strong: bool = False,
    normalization: str = "imagenet",
):
    """Yield (input, target) tensors of square crops. With a seed: shuffled, random
    squares, rotation ±25°, flips (h 0.5, v 0.1) and, if `strong`, intensity changes;
    without: the validation crop, the head with `margin`, as inference cuts it."""
    from fetalhc.model.crops import around_box

    idx = np.arange(len(data))
    rng = np.random.default_rng(seed) if seed is not None else None
    intensity = intensity_augmentation(seed) if seed is not None and strong else None
    if rng is not None:
        idx = idx[rng.permutation(len(idx))]
    for start in range(0, len(idx), batch_size):
        images, masks = [], []
        for i in idx[start : start + batch_size]:
            if rng is None:
                im, mk = head_crop_pair(data, i, out, around_box(data.boxes[i], margin))
            else:
                square = sample_square(data.boxes[i], data.images[i].shape, rng)
                im, mk = head_crop_pair(
                    data,
                    i,
                    out,
                    square,
                    rng.uniform(-25, 25),
                    bool(rng.random() < 0.5),
                    bool(rng.random() < 0.1),
                )
                if intensity is not None:
                    im = intensity(image=im)["image"]
            images.append(im)
            masks.append(mk)
        x = torch.from_numpy(preprocess(np.stack(images), normalization))
        y = torch.from_numpy(np.stack(masks).astype(np.float32)[:, None] / 255.0)
        yield x, y


def training_set(
    config: TrainConfig, records: Sequence[Record], desc: str = ""
) -> CachedSet | FullSet:
    """What a config trains on: two-pass (head-crop) models cut their crops from the
    full-size images on the fly; the others train on images cached at the model's size."""
    if config.head_crop:
        return FullSet(records, desc=desc)
    return CachedSet(records, tuple(config.image_size), desc=desc)


def training_set_from_arrays(
    config: TrainConfig, images: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> CachedSet | FullSet:
    """`training_set` for images and 0/1 masks held in memory."""
    if config.head_crop:
        return FullSet.from_arrays(images, masks)
    return CachedSet.from_arrays(images, masks, tuple(config.image_size))
