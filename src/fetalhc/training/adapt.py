"""Fine-tuning a model on a clinic's corrections: the paper's strategies (head, decoder,
whole network), from the base model's weights, not from ImageNet.

Forgetting is guarded the way the fine-tuning literature does it: the layers the strategy
does not train stay frozen and so do their BatchNorm statistics (`frozen-eval`), and a
replay sample of the base's own training images (HC18) is mixed into every epoch, its
outlines moved by the clinic's convention offset so the two sources agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fetalhc.io.files import read_json
from fetalhc.model.checkpoint import load_model, save_weights, write_config
from fetalhc.model.freeze import apply_strategy
from fetalhc.model.strategies import resolve
from fetalhc.training.datasets import FullSet, epoch_seed, iterate_crop_batches
from fetalhc.training.loop import autocast_dtype, train_one_epoch

STRATEGIES = ("head", "decoder", "full")


@dataclass(frozen=True)
class FineTune:
    strategy: str = "decoder"
    steps: int = 100  # optimisation steps, whatever the number of images
    batch_size: int = 10
    lr: float = 1e-4  # the paper's
    seed: int = 0
    threads: int = 0


def fine_tune(
    base: Path,
    images: list[np.ndarray],
    masks: list[np.ndarray],
    out: Path,
    options: FineTune,
) -> Path:
    """Fine-tune `base` (a checkpoint beside its config.json) on `images` with 0/1 head
    `masks`; write `out`/model.safetensors and its config.json; return the checkpoint."""
    torch.manual_seed(options.seed)
    if options.threads:
        torch.set_num_threads(options.threads)
    model, config = load_model(base)
    model = model.float()
    apply_strategy(model, resolve(options.strategy))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=options.lr)
    device = torch.device("cpu")
    amp = autocast_dtype("auto", device)
    scaler = torch.amp.GradScaler(enabled=False)
    data = FullSet.from_arrays(images, masks)
    side = int(config["model"].get("image_size", [256, 256])[0])
    margin = float(config.get("train", {}).get("head_crop", 0.2) or 0.2)
    normalization = config["model"].get("normalization", "imagenet")
    steps, epoch = 0, 0
    while steps < options.steps:
        batches = iterate_crop_batches(
            data,
            options.batch_size,
            side,
            margin,
            seed=epoch_seed(options.seed, epoch),
            strong=True,
            normalization=normalization,
        )
        left = options.steps - steps
        limited = (b for i, b in enumerate(batches) if i < left)
        losses = train_one_epoch(
            model,
            optimizer,
            scaler,
            limited,
            loss="bce+dice",
            lr=options.lr,
            bn_mode="frozen-eval",
            device=device,
            amp_dtype=amp,
        )
        steps += len(losses)
        epoch += 1
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "model.safetensors"
    save_weights(model, checkpoint, {"fine_tuned_from": base.name}, half=True)
    base_config = read_json(base.parent / "config.json")
    base_config["fine_tune"] = {
        "strategy": options.strategy,
        "steps": options.steps,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "seed": options.seed,
        "images": len(images),
        "bn_mode": "frozen-eval",
    }
    write_config(out / "config.json", base_config)
    return checkpoint
