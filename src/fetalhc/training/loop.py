"""The training loop's parts, plain (torchvision's references/segmentation style): device
and precision, loss, one epoch, the distillation target, evaluation."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fetalhc.errors import FetalHCError
from fetalhc.measure import metrics
from fetalhc.model.freeze import encoder_frozen, set_train_mode
from fetalhc.training.config import TrainConfig


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FetalHCError("device cuda: no CUDA device available")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CPUs with native bf16 (3-4x faster here), fp16 AMP on CUDA."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else None
    if precision == "fp16" and device.type != "cuda":
        raise FetalHCError("precision fp16 needs a CUDA device (use bf16 or fp32 on a CPU)")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """The one mixed-precision context of training and evaluation: `amp_dtype` (bf16 on a
    CPU that has it, fp16 on CUDA) or full precision when None."""
    return torch.autocast(
        device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
    )


def loss_fn(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target) if "bce" in name else 0.0
    dice = 0.0
    if "dice" in name:
        prob = torch.sigmoid(logits)
        inter = (prob * target).sum(dim=(1, 2, 3))
        denom = prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3))
        dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
    return bce + dice


def forward(model: nn.Module, x: torch.Tensor, frozen_encoder: bool) -> torch.Tensor:
    """Forward pass; a frozen encoder runs without autograd bookkeeping."""
    if frozen_encoder:
        with torch.no_grad():
            features = model.encoder(x)
        return model.segmentation_head(model.decoder(features))
    return model(x)


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler,
    batches,
    loss_name: str,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    frozen_encoder: bool,
):
    """One optimisation step per batch; yields each step's loss. Shared with the benchmark."""
    for x, y in batches:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with autocast(device, amp_dtype):
            logits = forward(model, x, frozen_encoder)
        loss = loss_fn(loss_name, logits, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        yield loss.item()


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler,
    batches,
    *,
    loss: str,
    lr: float,
    bn_mode: str,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    on_step=None,
) -> list[float]:
    """One epoch over `batches` at learning rate `lr`; returns each step's loss.
    `on_step(losses)` is called after every step (a progress bar)."""
    set_train_mode(model, bn_mode)
    for group in optimizer.param_groups:
        group["lr"] = lr
    losses: list[float] = []
    frozen = encoder_frozen(model)
    for value in train_steps(model, optimizer, scaler, batches, loss, device, amp_dtype, frozen):
        losses.append(value)
        if on_step is not None:
            on_step(losses)
    return losses


def distilled(
    batches,
    teachers: list[nn.Module],
    weight: float,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
):
    """(input, target) batches whose target is (1 - weight) x the reference mask + weight x
    the teachers' mean probability on the same input. BCE is linear in its target, so this
    is the usual distillation loss, (1 - w) BCE(mask) + w BCE(teacher), in one term."""
    for x, y in batches:
        with (
            torch.no_grad(),
            autocast(device, amp_dtype),
        ):
            xt = x.to(device).contiguous(memory_format=torch.channels_last)
            soft = torch.stack([torch.sigmoid(t(xt).float()) for t in teachers]).mean(0)
        yield x, (1 - weight) * y.to(device) + weight * soft


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches,
    *,
    loss: str,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, float]:
    """Validation at model resolution: loss, mean per-image Dice, and the paper's metrics
    (pixel accuracy over all pixels; Dice and IoU of each batch's pixels, averaged over
    batches). Dice and IoU are fetalhc.measure.metrics', as everywhere else."""
    model.eval()
    losses, dices, batch_dice, batch_iou = [], [], [], []
    correct = pixels = images = 0
    for x, y in batches:
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with autocast(device, amp_dtype):
            logits = model(x)
        losses.append(float(loss_fn(loss, logits, y)) * len(x))
        images += len(x)
        pred = (logits.float() > 0).cpu().numpy()
        ref = (y > 0.5).cpu().numpy()
        dices.extend(metrics.dice(p, r) for p, r in zip(pred, ref, strict=True))
        correct += int((pred == ref).sum())
        pixels += pred.size
        batch_dice.append(metrics.dice(pred, ref))
        batch_iou.append(metrics.iou(pred, ref))
    return {
        "val_loss": sum(losses) / images,
        "val_dice": float(np.mean(dices)),
        "val_paper_pa": correct / pixels,
        "val_paper_dice": float(np.mean(batch_dice)),
        "val_paper_miou": float(np.mean(batch_iou)),
    }


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of an epoch (1-based): constant, or cosine from lr towards 0."""
    if config.lr_schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / config.epochs))
    return config.lr
