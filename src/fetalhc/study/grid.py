"""A study's grid: its YAML, its cells, what identifies a cell's result, and when a cell's
model is degenerate (no torch import)."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from fetalhc.data.split import SPLIT_PARTS
from fetalhc.errors import FetalHCError
from fetalhc.io.files import read_json, read_yaml
from fetalhc.model.config import DEFAULT_IMAGE_SIZE
from fetalhc.training.config import (
    TrainConfig,
    config_from_mapping,
    format_size,
    parse_size,
    without_later_defaults,
)

CELL_DONE = "cell.json"
log = logging.getLogger(__name__)


GRID_KEYS = (
    "strategies",
    "seeds",
    "fractions",
    "train_images",
    "encoders",
    "image_sizes",
    "bn_modes",
    "skip_rescale",
)


@dataclass(frozen=True)
class Cell:
    strategy: str
    seed: int
    fraction: float = 1.0
    encoder: str = "mobilenet_v2"
    image_size: str = format_size(DEFAULT_IMAGE_SIZE)
    train_images: int = 0  # 0: all (or `fraction`) of the training part
    bn_mode: str = ""  # "": the study's train.bn_mode
    skip_rescale: bool = False  # True: the encoder's skips scaled (TrainConfig.skip_rescale)

    @property
    def name(self) -> str:
        size = (
            f"n{self.train_images:03d}"
            if self.train_images
            else (f"f{int(round(self.fraction * 100)):03d}")
        )
        parts = [self.strategy, size, f"s{self.seed}"]
        if self.encoder != "mobilenet_v2":
            parts.append(self.encoder)
        parts.append(self.image_size)
        if self.bn_mode:
            parts.append(f"bn-{self.bn_mode}")
        if self.skip_rescale:
            parts.append("skip-rescaled")
        return "_".join(parts)


@dataclass
class StudyConfig:
    data: str
    split: str | dict = field(default_factory=lambda: {"val": 0.1, "test": 0.2, "seed": 0})
    encoder_weights: str = "imagenet"
    train: dict = field(default_factory=dict)
    grids: list[dict] = field(default_factory=list)
    evaluate_part: str = "test"
    workers: int = 1
    base: Path = Path(".")

    def cells(self) -> list[Cell]:
        cells: list[Cell] = []
        size = self.train.get("image_size", DEFAULT_IMAGE_SIZE)
        default_size = size if isinstance(size, str) else format_size(size)
        for grid in self.grids:
            for strategy, seed, fraction, n, encoder, size, bn, skip in itertools.product(
                grid["strategies"],
                grid.get("seeds", [0]),
                grid.get("fractions", [1.0]),
                grid.get("train_images", [0]),
                grid.get("encoders", [self.train.get("encoder", "mobilenet_v2")]),
                grid.get("image_sizes", [default_size]),
                grid.get("bn_modes", [""]),
                grid.get("skip_rescale", [bool(self.train.get("skip_rescale", False))]),
            ):
                cell = Cell(
                    str(strategy),
                    int(seed),
                    float(fraction),
                    str(encoder),
                    str(size),
                    int(n),
                    "" if bn == self.train.get("bn_mode", "paper") else str(bn),
                    bool(skip),
                )
                if cell not in cells:
                    cells.append(cell)
        return cells

    def path(self, value: str) -> str:
        """Paths in the YAML are relative to the YAML file."""
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else (self.base / p))


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML: unknown keys, wrong types and bad values are refused
    with the key's name before anything runs."""
    path = Path(path)
    raw = read_yaml(path, "study file")
    if not isinstance(raw, dict) or "data" not in raw or "grids" not in raw:
        raise FetalHCError(f"{path}: a study needs 'data' and 'grids'")
    known = {k: raw[k] for k in StudyConfig.__dataclass_fields__ if k in raw and k != "base"}
    unknown = set(raw) - set(known)
    if unknown:
        raise FetalHCError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    for key, kind in (("data", str), ("encoder_weights", str), ("evaluate_part", str)):
        if key in raw and not isinstance(raw[key], kind):
            raise FetalHCError(f"{path}: {key!r} must be a string")
    if not isinstance(raw.get("split", {}), str | dict):
        raise FetalHCError(f"{path}: 'split' must be a CSV path or {{val, test, seed}}")
    if isinstance(raw.get("workers", 1), bool) or not isinstance(raw.get("workers", 1), int):
        raise FetalHCError(f"{path}: 'workers' must be an integer")
    if raw.get("evaluate_part", "test") not in SPLIT_PARTS:
        raise FetalHCError(f"{path}: 'evaluate_part' must be one of {', '.join(SPLIT_PARTS)}")
    train = raw.get("train") or {}
    fixed = {k: v for k, v in (("data", "x"), ("split", "x")) if k not in train}
    try:
        config_from_mapping(train, **fixed)  # every key and type, with the key's name
    except FetalHCError as exc:
        raise FetalHCError(f"{path}: {exc}") from None
    known["train"] = train
    if not isinstance(raw["grids"], list) or not raw["grids"]:
        raise FetalHCError(f"{path}: 'grids' must be a non-empty list")
    for i, grid in enumerate(raw["grids"]):
        _check_grid(path, i, grid)
    study = StudyConfig(**known, base=path.resolve().parent)
    from fetalhc.model.strategies import resolve

    for cell in study.cells():
        resolve(cell.strategy)
        cell_config(study.train, cell, "x", "x", "imagenet").validate()
    return study


def _check_grid(path: Path, index: int, grid: object) -> None:
    where = f"{path}: grids[{index}]"
    if not isinstance(grid, dict):
        raise FetalHCError(f"{where} must be a mapping")
    unknown = sorted(set(grid) - set(GRID_KEYS))
    if unknown:
        raise FetalHCError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(GRID_KEYS)}"
        )
    if not grid.get("strategies"):
        raise FetalHCError(f"{where}: every grid needs a list of strategies")
    types_ = {
        "strategies": str,
        "seeds": int,
        "fractions": (int, float),
        "train_images": int,
        "encoders": str,
        "image_sizes": str,
        "bn_modes": str,
        "skip_rescale": bool,
    }
    for key, value in grid.items():
        if not isinstance(value, list) or not value:
            raise FetalHCError(f"{where}: {key!r} must be a non-empty list")
        bad = [
            v
            for v in value
            if (isinstance(v, bool) and types_[key] is not bool) or not isinstance(v, types_[key])
        ]
        if bad:
            raise FetalHCError(f"{where}: {key!r} holds a value of the wrong type: {bad[0]!r}")


def cell_config(train: dict, cell: Cell, data: str, split: str, weights: str) -> TrainConfig:
    """The full, resolved training config of one cell (YAML `train:` + the cell's values)."""
    fixed: dict = {
        "data": data,
        "split": split,
        "strategy": cell.strategy,
        "encoder": cell.encoder,
        "encoder_weights": weights,
        "fraction": cell.fraction,
        "seed": cell.seed,
        "image_size": parse_size(cell.image_size),
        "train_images": cell.train_images,
    }
    if cell.bn_mode:
        fixed["bn_mode"] = cell.bn_mode
    fixed["skip_rescale"] = cell.skip_rescale
    mapping = {k: v for k, v in train.items() if k not in fixed}
    return config_from_mapping(mapping, **fixed)


def config_identity(config: TrainConfig, split_file: str | Path, evaluate_part: str) -> dict:
    """What identifies a cell's result: the resolved recipe, the split's content and the
    evaluated part — not where the data lie or which device ran it."""
    identity = without_later_defaults(config.to_dict())
    for key in ("data", "split", "device"):
        identity.pop(key)
    if identity["encoder_weights"] not in ("imagenet", "none"):
        identity["encoder_weights"] = Path(identity["encoder_weights"]).name
    identity["split_sha256"] = hashlib.sha256(Path(split_file).read_bytes()).hexdigest()
    identity["evaluate_part"] = evaluate_part
    return identity


def identity_hash(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _stale_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def stale_keys(folder: Path, identity: dict, split: str | Path) -> list[str]:
    """Settings in which an existing cell folder differs from `identity` ([] if none, or
    if there is no folder). A half-trained cell may still go on to more epochs."""
    previous = _previous_identity(folder)
    if previous is None:
        return []
    if not (folder / CELL_DONE).exists():
        identity = {**identity, "evaluate_part": None, "split_sha256": _text_sha256(split)}
        identity.pop("epochs")
    return _stale_keys(previous, identity)


def _text_sha256(path: str | Path) -> str:
    """Hash of a CSV's text, line endings normalised (a run folder's copy of the split may
    have been written with other line endings than the study's)."""
    return hashlib.sha256(Path(path).read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def _previous_identity(folder: Path) -> dict | None:
    """The identity a cell folder was made with (finished or half-trained), if any."""
    done = folder / CELL_DONE
    if done.exists():
        return read_cell(done).get("config") or {"unknown": "made by an older fetalhc"}
    config = folder / "config.json"
    if config.exists() and (folder / "split.csv").exists():
        train = read_json(config).get("train")
        if not isinstance(train, dict):
            raise FetalHCError(f"{config}: no 'train' settings; delete the folder to re-run")
        try:
            old = config_from_mapping(
                {k: v for k, v in train.items() if k in TrainConfig.__dataclass_fields__}
            )
        except FetalHCError as exc:
            raise FetalHCError(f"{config}: {exc}") from None
        evaluate_part = next((p.name[5:] for p in folder.glob("eval-*")), None)
        identity = config_identity(old, folder / "split.csv", evaluate_part or "")
        identity["split_sha256"] = _text_sha256(folder / "split.csv")
        identity.pop("epochs")  # a half-trained cell may go on to more epochs
        identity["evaluate_part"] = None
        return identity
    return None


def read_cell(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FetalHCError(f"{path}: corrupt cell record ({exc}); delete it to re-run") from None
    if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
        raise FetalHCError(f"{path}: not a cell record; delete it to re-run the cell")
    return result


def degenerate_reason(metrics: dict, no_head: int, images: int, history: Path) -> str:
    """Why a cell's model is degenerate ('' if it is not): it predicts head everywhere or
    nowhere, or its validation Dice never moved."""
    if images and no_head > images / 2:
        return f"no head found in {no_head} of {images} test images"
    pa = metrics.get("paper_pixel_accuracy", 1.0)
    if pa < 0.6:
        return f"pixel accuracy {100 * pa:.1f} %: predicts head (almost) everywhere or nowhere"
    try:
        with open(history, newline="") as f:
            dice = [float(r["val_dice"]) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        dice = []
    if len(dice) >= 3 and max(dice) - min(dice) < 0.01 and max(dice) < 0.7:
        return f"validation Dice flat at {max(dice):.3f} over {len(dice)} epochs"
    return ""
