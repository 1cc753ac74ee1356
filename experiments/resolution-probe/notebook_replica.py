"""A minimal, independent re-implementation of the paper's training loop, for checking
that a difference from the paper is not in fetalhc's own training code.

Written from the facts of the authors' notebooks (FT_Methods_for_Fetal_Head_Segmentation):
smp.Unet('mobilenet_v2'), frozen parameters by `requires_grad = False` only, the whole
model in train mode (every BatchNorm uses batch statistics), albumentations Resize ->
Rotate(25, p=1) -> HorizontalFlip(0.5) -> VerticalFlip(0.1) -> Normalize(0, 1) ->
ToTensorV2, batch 10, Adam 1e-4 over all parameters, BCEWithLogitsLoss, validation in eval
mode with the Dice of each batch averaged. None of fetalhc's data, model or training code
is used, only its reader of torchvision-format encoder weights. Rotate keeps the installed
albumentations' default border (reflect-101 up to 1.3, the notebooks' mid-2023 version;
constant from 2.0), so running this in an environment with the 2023 versions
(smp 0.3.3, albumentations 1.3.1) replays the notebooks' library defaults.

    python experiments/resolution-probe/notebook_replica.py --row encoder --size 160x128 --epochs 2 \\
        --data ../shared/hc18 --split results/study-paper/split.csv \\
        --weights ../shared/weights/mobilenet_v2_imagenet.pth [--train-head]
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
from albumentations.pytorch import ToTensorV2
from torch import nn

from fetalhc.model.unet import load_encoder_weights

ROWS = ("encoder", "encoder-random", "d0")


def load_pair(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
    outline = cv2.imread(str(folder / name.replace(".png", "_Annotation.png")), 0)
    contours, _ = cv2.findContours(
        (outline > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    mask = np.zeros_like(outline)
    cv2.drawContours(mask, contours, -1, 1, cv2.FILLED)
    return image, mask.astype(np.float32)


class Pairs(torch.utils.data.Dataset):
    def __init__(self, folder: Path, names: list[str], transform: A.Compose) -> None:
        self.items = [load_pair(folder, n) for n in names]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        out = self.transform(image=self.items[i][0], mask=self.items[i][1])
        return out["image"], out["mask"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--row", choices=ROWS, default="encoder")
    p.add_argument("--size", default="160x128", help="WxH")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data", type=Path, default=Path("../shared/hc18"))
    p.add_argument("--split", type=Path, default=Path("results/study-paper/split.csv"))
    p.add_argument("--weights", default="../shared/weights/mobilenet_v2_imagenet.pth")
    p.add_argument("--train-head", action="store_true", help="also train the 3x3 head")
    p.add_argument(
        "--val-augmented",
        action="store_true",
        help="validate on images given the training transform, as the notebooks did (they "
        "split one dataset built with train_transform)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(1)
    w, h = (int(v) for v in args.size.split("x"))
    with open(args.split, newline="") as f:
        split = list(csv.DictReader(f))
    names = {part: [r["filename"] for r in split if r["part"] == part] for part in ("train", "val")}
    unit = A.Normalize(mean=(0, 0, 0), std=(1, 1, 1), max_pixel_value=255.0)
    train_tf = A.Compose(
        [
            A.Resize(h, w),
            A.Rotate(limit=25, p=1.0),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.1),
            unit,
            ToTensorV2(),
        ]
    )
    val_tf = A.Compose([A.Resize(h, w), unit, ToTensorV2()])
    folder = args.data / "training_set"
    train = torch.utils.data.DataLoader(
        Pairs(folder, names["train"], train_tf), batch_size=10, shuffle=True
    )
    val = torch.utils.data.DataLoader(
        Pairs(folder, names["val"], train_tf if args.val_augmented else val_tf), batch_size=10
    )

    model = smp.Unet("mobilenet_v2", encoder_weights=None, classes=1, activation=None)
    if args.row != "encoder-random":
        load_encoder_weights(model.encoder, args.weights)
    for q in [*model.decoder.parameters(), *model.segmentation_head.parameters()]:
        q.requires_grad = False
    if args.row == "d0":
        for q in model.encoder.parameters():
            q.requires_grad = False
        for q in model.decoder.blocks[0].parameters():
            q.requires_grad = True
    if args.train_head:
        for q in model.segmentation_head.parameters():
            q.requires_grad = True
    trainable = sum(q.numel() for q in model.parameters() if q.requires_grad)
    print(
        f"row {args.row}, {args.size}, trainable {trainable:,}, head trained {args.train_head}, "
        f"val augmented {args.val_augmented}; smp {smp.__version__}, albumentations "
        f"{A.__version__}, torch {torch.__version__}"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    bce = nn.BCEWithLogitsLoss()
    model.train()
    for epoch in range(1, args.epochs + 1):
        t0, losses = time.perf_counter(), []
        for x, y in train:
            loss = bce(model(x), y.float().unsqueeze(1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        val_losses, dices = [], []
        with torch.no_grad():
            for x, y in val:
                logits, y = model(x), y.float().unsqueeze(1)
                val_losses.append(bce(logits, y).item())
                pred = (torch.sigmoid(logits) > 0.5).float()
                dices.append((2 * (pred * y).sum() / ((pred + y).sum() + 1e-8)).item())
        model.train()
        print(
            f"epoch {epoch} train_bce {np.mean(losses):.4f} val_bce {np.mean(val_losses):.4f} "
            f"val_dice {np.mean(dices):.4f} seconds {time.perf_counter() - t0:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
