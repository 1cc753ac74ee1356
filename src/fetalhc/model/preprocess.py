"""The network's input: 8-bit grey -> normalised 3-channel float (NumPy only).

``imagenet`` (default) normalises with the ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225), as the ImageNet encoder weights expect; ``unit`` keeps [0, 1], as the
paper's notebooks do (``A.Normalize(mean=0, std=1)``).
"""

from __future__ import annotations

import numpy as np

NORMALIZATIONS = ("imagenet", "unit")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# what `preprocess` does, in words, for a run's config.json
INPUT_DESCRIPTIONS = {
    "imagenet": "grey uint8 -> [0,1] -> 3 channels -> ImageNet mean/std",
    "unit": "grey uint8 -> [0,1] -> 3 channels (the paper's Normalize(mean=0, std=1))",
}


def preprocess(gray: np.ndarray, normalization: str = "imagenet") -> np.ndarray:
    """(N, H, W) or (H, W) uint8 grey -> (N, 3, H, W) float32 normalised network input."""
    x = np.asarray(gray, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    x = x[:, None] / 255.0
    if normalization == "unit":
        return np.repeat(x, 3, axis=1).astype(np.float32)
    return ((x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]).astype(
        np.float32
    )
