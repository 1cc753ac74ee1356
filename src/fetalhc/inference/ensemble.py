"""Models averaged: several segmenters' head probabilities, their mean pass by pass (each
locates the head itself), measured as one model's (nnU-Net's `ensemble`, at inference).

The flag's thresholds, the intervals and a calliper offset are calibrated for one model:
an average takes the first member's (its config), and says so once at load.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.inference.segmenter import Prediction, Segmenter

log = logging.getLogger(__name__)


class MeanOfModels:
    """Segmenters whose probabilities are averaged; has a Segmenter's interface
    (`predict`, `batch_size`, `checkpoint`, `config`), so `HeadMeasurer(segmenter=...)`
    measures with it."""

    def __init__(self, members: Sequence[Segmenter]) -> None:
        if len(members) < 2:
            raise FetalHCError("an average needs two models or more")
        self.members = list(members)
        self.batch_size = min(m.batch_size for m in self.members)
        self.checkpoint: Path = self.members[0].checkpoint
        self.config: dict = self.members[0].config
        log.info(
            "fetalhc: averaging %d models; the flag and intervals are %s's",
            len(self.members),
            self.checkpoint.name,
        )

    def predict(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        images = list(images)
        each = [m.predict(images) for m in self.members]
        out = []
        for predictions in zip(*each, strict=True):
            probability = np.mean([p.probability for p in predictions], axis=0)
            coarse = [p.coarse_probability for p in predictions]
            first = None if any(c is None for c in coarse) else np.mean(coarse, axis=0)
            views = [p.other_view for p in predictions]
            other = None  # the other view of a side-by-side image, where every member has it
            if all(v is not None for v in views) and len({v.shape for v in views}) == 1:
                other = np.mean([v.full() for v in views], axis=0)
            out.append(Prediction(probability, _mean_small(predictions), first, other))
        return out

    @property
    def flip_tta(self) -> bool:
        return any(m.flip_tta for m in self.members)

    @property
    def backend(self) -> str:
        return "+".join(sorted({m.backend for m in self.members}))

    @property
    def checkpoints(self) -> list[Path]:
        return [c for m in self.members for c in m.checkpoints]


def _mean_small(predictions: Sequence[Prediction]):
    """The members' model-size logits averaged, made when first asked for."""
    return lambda: np.mean([p.logits_small for p in predictions], axis=0)
