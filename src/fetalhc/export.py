"""ONNX export with a numerical check against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .errors import FetalHCError
from .fileio import atomic_path

OPSET = 18
CONFIG_KEY = "fetalhc_config"
MAX_ABS_DIFF = 1e-3


def export_onnx(
    checkpoint: str | Path,
    onnx_path: str | Path,
    verify: bool = True,
    check_images: list[np.ndarray] | None = None,
) -> float | None:
    """Export with a dynamic batch axis; with `verify`, return the largest |logit| difference
    from PyTorch on `check_images` (or random input) and raise if it exceeds 1e-3."""
    from .checkpoint import load_model

    model, config = load_model(checkpoint)
    w, h = config["model"]["image_size"]
    dummy = torch.zeros(1, 3, h, w)
    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        try:
            # torch.export-based exporter (the maintained one); batch is a dynamic axis.
            program = torch.onnx.export(
                model,
                (dummy,),
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=OPSET,
                dynamo=True,
                verbose=False,
            )
            program.save(str(tmp))
            _embed_config(tmp, config)
        except Exception as exc:  # noqa: BLE001 - exporter failures are many types
            raise FetalHCError(f"ONNX export failed: {exc}") from None
        diff = _max_difference(model, tmp, (w, h), check_images) if verify else None
        if diff is not None and diff > MAX_ABS_DIFF:
            raise FetalHCError(f"ONNX differs from PyTorch by {diff:.2e} (> {MAX_ABS_DIFF})")
    return diff


def _embed_config(path: Path, config: dict) -> None:
    """Store the model config in the ONNX metadata, so the .onnx file is self-contained."""
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONFIG_KEY, json.dumps({"model": config["model"]})
    onnx.save(proto, str(path))


def _max_difference(
    model: torch.nn.Module, onnx_file: Path, size: tuple[int, int], images: list[np.ndarray] | None
) -> float:
    import cv2
    import onnxruntime as ort

    from .model import preprocess

    w, h = size
    if images:
        x = preprocess(
            np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
        )
    else:
        x = np.random.default_rng(0).normal(size=(2, 3, h, w)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())
