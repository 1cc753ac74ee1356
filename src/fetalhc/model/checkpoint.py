"""Checkpoints: safetensors weights + a JSON config that rebuilds the model (no pickle)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path, read_json, write_json
from fetalhc.model.config import ModelConfig
from fetalhc.model.unet import build_model

CONFIG_NAME = "config.json"


def save_weights(
    model: nn.Module, path: str | Path, metadata: dict | None = None, half: bool = False
) -> None:
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata=meta)


def load_weights(model: nn.Module, path: str | Path) -> None:
    path = Path(path)
    if not path.is_file():
        raise FetalHCError(f"{path}: checkpoint not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise FetalHCError(f"{path}: corrupted or not a safetensors checkpoint ({exc})") from None
    own = model.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise FetalHCError(f"{path}: weights do not match the model described by its config.json")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


read_config = read_json  # config.json of a run folder


def write_config(path: str | Path, config: dict) -> None:
    write_json(path, config)


def config_for_checkpoint(checkpoint: Path) -> dict:
    """config.json beside a checkpoint (a run folder holds both)."""
    return read_config(checkpoint.parent / CONFIG_NAME)


def load_model(checkpoint: str | Path, config: dict | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a model from `checkpoint` and its config (the config.json next to it, unless
    the caller has read it already); eval mode."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FetalHCError(f"{checkpoint}: checkpoint not found")
    if config is None:
        config = config_for_checkpoint(checkpoint)
    model = build_model(ModelConfig.from_dict(config.get("model", {})), encoder_weights="none")
    load_weights(model, checkpoint)
    model.eval()
    return model, config


def resolve_checkpoint(run: str | Path | None, checkpoint: str | Path | None) -> Path:
    """--checkpoint FILE wins; --run RUN (or --model DIR) means the folder's checkpoint:
    best, last, a bundled folder's model or default .safetensors."""
    if checkpoint:
        return Path(checkpoint)
    if run:
        run = Path(run)
        if not run.is_dir():
            raise FetalHCError(f"{run}: run folder not found")
        for name in (
            "best.safetensors",
            "last.safetensors",
            "model.safetensors",
            "default.safetensors",
        ):
            if (run / name).is_file():
                return run / name
        raise FetalHCError(f"{run}: holds no checkpoint (best.safetensors)")
    raise FetalHCError("give --run RUN or --checkpoint FILE")


def save_resume_state(path: Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_resume_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged file of any kind
        raise FetalHCError(f"{path}: corrupted resume state ({type(exc).__name__})") from None
