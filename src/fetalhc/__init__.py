"""fetalhc: fetal head segmentation and head-circumference measurement in 2D ultrasound.

The public API (imported lazily, so `import fetalhc` and the CLI stay fast)::

    import fetalhc

    measurer = fetalhc.HeadMeasurer()                       # bundled model, loaded once
    result = measurer.measure("001_HC.png", pixel_size_mm=0.12)
    result.hc_mm, result.ga_weeks, result.quality, result.ellipse_mm
    results = list(measurer.measure_many(paths, pixel_sizes_mm))

    config = fetalhc.TrainConfig(data="hc18", split="split.csv", strategy="decoder")
    summary = fetalhc.train(config, "runs/decoder")          # or train_on_arrays(...)
    rows = fetalhc.evaluate_rows("runs/decoder/best.safetensors", "hc18", "split.csv")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HeadMeasurer": "inference.measurer",
    "HeadMeasurement": "inference.measurer",
    "measure_image": "inference.measurer",
    "TrainConfig": "training.config",
    "train": "api",
    "train_on_arrays": "api",
    "evaluate_rows": "api",
    "write_evaluation": "api",
    "Ellipse": "measure.ellipse",
    "hc_mm": "measure.ellipse",
    "hadlock_ga_weeks": "measure.biometry",
    "PRESETS": "model.strategies",
    "FetalHCError": "errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'fetalhc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
