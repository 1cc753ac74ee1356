"""Training data: decoded and resized once (cached in memory), augmented cheaply per epoch."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from tqdm import tqdm

from .data import Record, load_mask
from .errors import FetalHCError
from .fileio import read_gray, to_gray_uint8
from .model import preprocess

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
):
    """Yield (input, target) tensors; shuffled and augmented when a seed is given."""
    idx = np.arange(len(data)) if indices is None else np.asarray(indices)
    aug = None
    if seed is not None:
        idx = idx[np.random.default_rng(seed).permutation(len(idx))]
        if augment:
            aug = paper_augmentation(seed)
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        images, masks = data.images[chunk], data.masks[chunk]
        if aug is not None:
            pairs = [aug(image=im, mask=mk) for im, mk in zip(images, masks, strict=True)]
            images = np.stack([p["image"] for p in pairs])
            masks = np.stack([p["mask"] for p in pairs])
        x = torch.from_numpy(preprocess(images, normalization))
        y = torch.from_numpy(masks.astype(np.float32)[:, None] / 255.0)
        yield x, y
