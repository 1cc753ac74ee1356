"""The networks behind a `Segmenter`: PyTorch or ONNX Runtime, each a function from a
preprocessed batch (N, 1, H, W float32) to logits; the ONNX copies exported once and
cached."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]
_PRIVATE_EXPORTS: list[tempfile.TemporaryDirectory] = []  # one per process, when needed


def cache_dir() -> Path:
    base = os.environ.get("FETALHC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fetalhc"
    )
    return Path(base)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def torch_runner(checkpoint: Path, config: dict) -> Runner:
    """The checkpoint's network in PyTorch (channels-last, inference mode)."""
    import torch

    from fetalhc.model.checkpoint import load_model

    # PyTorch's threads are the process's: the caller sets them (model.unet.set_threads)
    model, _ = load_model(checkpoint, config)  # config.json read once, by the caller
    model = model.to(memory_format=torch.channels_last)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return model(t).float().numpy()

    return run


def onnx_runner(checkpoint: Path, size: tuple[int, int], threads: int = 0) -> Runner:
    """The network in ONNX Runtime: an exported `.onnx` as it is, or a `.safetensors`
    checkpoint exported once per input size asked for (`cached_onnx`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ONNX Runtime's threads spin for work after each run by default. With a session
    # per input size (a first pass at another side than the close-up), the idle
    # session's spinning threads take the cores from the one running and from the
    # Python post-processing: a 192 pass took 2x as long (results/model-v3/notes.md).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions: dict[tuple[int, int], tuple] = {}

    def session_for(w: int, h: int) -> tuple:
        """ONNX graphs have a fixed image size: one session per size asked for."""
        if (w, h) in sessions:
            return sessions[(w, h)]
        if checkpoint.suffix == ".onnx":
            if (w, h) != size:
                raise FetalHCError(
                    f"{checkpoint}: exported for {size[0]}x{size[1]}, not "
                    f"{w}x{h}; use the .safetensors checkpoint for another locate side"
                )
            path = checkpoint
        else:
            path = cached_onnx(checkpoint, (w, h), size)
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise FetalHCError(f"{path}: cannot load ONNX model ({exc})") from None
        sessions[(w, h)] = (session, session.get_inputs()[0].name)
        return sessions[(w, h)]

    session_for(*size)  # the model's own size now: a broken model fails at once

    def run(x: np.ndarray) -> np.ndarray:
        session, name = session_for(x.shape[-1], x.shape[-2])
        return session.run(None, {name: x})[0]

    return run


def cached_onnx(checkpoint: Path, size: tuple[int, int], own: tuple[int, int]) -> Path:
    """Export the checkpoint once per input size and reuse it (keyed by the checkpoint's
    hash; the model's own size `own` keeps the plain name)."""
    from fetalhc.model.export import export_onnx

    digest = file_sha256(checkpoint)[:16]
    name = f"{digest}.onnx" if size == own else f"{digest}_{size[0]}x{size[1]}.onnx"
    target = cache_dir() / name
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        log.info("fetalhc: exporting the model to ONNX once (cached in %s)", target.parent)
        export_onnx(checkpoint, target, verify=False, size=size)
        return target
    except OSError as exc:
        # A read-only home or cache (clusters, containers): export to a private temporary
        # folder for this process instead; nothing is kept.
        if not _PRIVATE_EXPORTS:  # one folder for every size this process exports
            _PRIVATE_EXPORTS.append(tempfile.TemporaryDirectory(prefix="fetalhc-"))
        log.info(
            "fetalhc: cache %s not writable (%s); using a temporary copy",
            target.parent,
            exc.strerror or exc,
        )
        target = Path(_PRIVATE_EXPORTS[0].name) / name
        export_onnx(checkpoint, target, verify=False, size=size)
        return target


def onnx_config(path: Path) -> dict:
    """The model config that `fetalhc export` stored in the ONNX metadata (or a
    config.json beside the file)."""
    import json

    import onnx

    from fetalhc.model.export import CONFIG_KEY

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors vary
        raise FetalHCError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    for entry in proto.metadata_props:
        if entry.key == CONFIG_KEY:
            return json.loads(entry.value)
    sidecar = path.parent / "config.json"
    if sidecar.is_file():
        from fetalhc.model.checkpoint import read_config

        return read_config(sidecar)
    raise FetalHCError(f"{path}: no fetalhc config in the ONNX metadata (export with fetalhc)")
