"""ONNX export with a numerical check against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path

OPSET = 18
CONFIG_KEY = "fetalhc_config"
MAX_ABS_DIFF = 1e-3


def export_onnx(
    checkpoint: str | Path,
    onnx_path: str | Path,
    verify: bool = True,
    check_images: list[np.ndarray] | None = None,
    size: tuple[int, int] | None = None,
) -> float | None:
    """Export with a dynamic batch axis; with `verify`, return the largest |logit| difference
    from PyTorch on `check_images` (or random input) and raise if it exceeds 1e-3. `size`
    (W, H): another input size than the model's (a two-pass model's locating pass)."""
    from fetalhc.model.checkpoint import load_model

    model, config = load_model(checkpoint)
    w, h = size or config["model"]["image_size"]
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
        norm = config["model"].get("normalization", "imagenet")
        diff = _max_difference(model, tmp, (w, h), check_images, norm) if verify else None
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
    model: torch.nn.Module,
    onnx_file: Path,
    size: tuple[int, int],
    images: list[np.ndarray] | None,
    normalization: str = "imagenet",
) -> float:
    import cv2
    import onnxruntime as ort

    from fetalhc.model.preprocess import preprocess

    w, h = size
    if images:
        x = preprocess(
            np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images]),
            normalization,
        )
    else:
        x = np.random.default_rng(0).normal(size=(2, 3, h, w)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


def quantize_int8(onnx_in: str | Path, onnx_out: str | Path, images: list[np.ndarray]) -> None:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on `images`.

    ONNX Runtime's own quantiser; the fetalhc config stays in the metadata."""
    import cv2
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fetalhc.model.preprocess import preprocess

    onnx_in = Path(onnx_in)
    source = onnx.load(str(onnx_in))
    meta = {e.key: e.value for e in source.metadata_props}
    model_config = json.loads(meta[CONFIG_KEY])["model"]
    w, h = model_config["image_size"]
    norm = model_config.get("normalization", "imagenet")
    batches = [
        preprocess(cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA), norm) for im in images
    ]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(batches)

        def get_next(self) -> dict | None:
            x = next(self.items, None)
            return None if x is None else {"image": x}

    with atomic_path(onnx_out, suffix=".onnx") as tmp:
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            quant_pre_process(str(onnx_in), str(prepared))
            quantize_static(
                str(prepared),
                str(tmp),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        finally:
            prepared.unlink(missing_ok=True)
        proto = onnx.load(str(tmp))
        if CONFIG_KEY not in {e.key for e in proto.metadata_props}:
            entry = proto.metadata_props.add()
            entry.key, entry.value = CONFIG_KEY, meta[CONFIG_KEY]
            onnx.save(proto, str(tmp))
