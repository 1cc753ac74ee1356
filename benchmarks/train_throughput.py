"""Training images/s: fetalhc's loop against a plain re-implementation of the paper's loop.

Both train smp Unet('mobilenet_v2') with BCE-with-logits, Adam 1e-4, batch 10 and the same
augmentation (rotate ±25°, flips) at the same size, on the same HC18 images. The paper's
loop decodes each PNG and builds its mask (convex hull of the outline, as its notebook
did) on every access and augments at full resolution before resizing, in fp32, with the
frozen encoder still in train mode. fetalhc's loop is the one `fetalhc train` runs
(`fetalhc.training.trainer.train_steps` over cached, resized images).

    python benchmarks/train_throughput.py [--data ../shared/hc18] [--size 320x224] [--batches 8]

Steady-state figures: two warm-up batches, then `--batches` timed batches per setting.
The one-off decode of fetalhc's cache is reported separately.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fetalhc.data.hc18 import load_labelled
from fetalhc.io.images import read_gray
from fetalhc.model.config import ModelConfig
from fetalhc.model.freeze import apply_strategy, encoder_frozen, set_train_mode
from fetalhc.model.preprocess import preprocess
from fetalhc.model.strategies import PRESETS
from fetalhc.model.unet import build_model
from fetalhc.sample import sample_dir
from fetalhc.training.datasets import CachedSet, iterate_batches
from fetalhc.training.loop import autocast_dtype, train_steps


class PaperDataset(Dataset):
    """Per-sample decode + albumentations, as in the paper's notebook."""

    def __init__(self, records, size_wh):
        w, h = size_wh
        self.records = records
        self.aug = A.Compose(
            [
                A.Rotate(limit=25, border_mode=cv2.BORDER_CONSTANT, p=1.0),
                A.HorizontalFlip(p=0.5),
                A.VerticalFlip(p=0.1),
                A.Resize(h, w),
            ]
        )

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        rec = self.records[i]
        image = read_gray(rec.image_path)
        outline = read_gray(rec.annotation_path)
        contours, _ = cv2.findContours(
            (outline > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        mask = np.zeros_like(outline)
        cv2.fillPoly(mask, [cv2.convexHull(np.concatenate(contours))], 1)
        out = self.aug(image=image, mask=mask)
        x = torch.from_numpy(preprocess(out["image"])[0])
        y = torch.from_numpy(out["mask"].astype(np.float32)[None])
        return x, y


def paper_loop(records, size, strategy, batches):
    torch.manual_seed(0)
    model = build_model(ModelConfig(), encoder_weights="none")
    apply_strategy(model, PRESETS[strategy])
    model.train()  # the notebook froze weights but left BatchNorm in train mode
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    loader = DataLoader(PaperDataset(records, size), batch_size=10, shuffle=True)
    it = itertools.cycle(loader)

    def step():
        x, y = next(it)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return len(x)

    return timed(step, batches)


def fetalhc_loop(cached, size, strategy, batches):
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=list(size)), encoder_weights="none")
    apply_strategy(model, PRESETS[strategy])
    model = model.to(memory_format=torch.channels_last)
    set_train_mode(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    device = torch.device("cpu")
    amp = autocast_dtype("auto", device)
    frozen = encoder_frozen(model)

    def batch_stream():
        epoch = 0
        while True:
            yield from iterate_batches(cached, 10, seed=epoch, augment=True)
            epoch += 1

    steps = train_steps(model, opt, scaler, batch_stream(), "bce", device, amp, frozen)

    def step():
        next(steps)
        return 10

    return timed(step, batches)


def timed(step, batches):
    for _ in range(2):
        step()
    t0 = time.perf_counter()
    n = sum(step() for _ in range(batches))
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path("../shared/hc18")
    parser.add_argument("--data", type=Path, default=default if default.is_dir() else sample_dir())
    parser.add_argument("--size", default="320x224")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--strategies", default="decoder,full")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    records = load_labelled(args.data)[:200]
    t0 = time.perf_counter()
    cached = CachedSet(records, size)
    cache_s = time.perf_counter() - t0
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}; size {args.size}, batch 10, "
        f"{args.batches} timed batches; fetalhc precision "
        f"{autocast_dtype('auto', torch.device('cpu')) or 'fp32'}"
    )
    print(
        f"fetalhc cache: {len(records)} images decoded once in {cache_s:.1f} s "
        f"({1000 * cache_s / len(records):.0f} ms/image)"
    )
    print(f"{'strategy':<10}{'paper loop img/s':>18}{'fetalhc img/s':>16}{'ratio':>8}")
    for strategy in args.strategies.split(","):
        paper = paper_loop(records, size, strategy, args.batches)
        ours = fetalhc_loop(cached, size, strategy, args.batches)
        print(f"{strategy:<10}{paper:>18.2f}{ours:>16.2f}{ours / paper:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
