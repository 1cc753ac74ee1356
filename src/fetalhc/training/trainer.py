"""The training engine: the paper's recipe by default, resumable, everything in RUN/."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from fetalhc import __version__
from fetalhc.data.hc18 import Record, load_labelled
from fetalhc.data.split import nested_order, nested_subset, part_files, read_split
from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path, exclusive_folder, write_csv
from fetalhc.model.checkpoint import (
    CONFIG_NAME,
    load_resume_state,
    read_config,
    save_resume_state,
    save_weights,
    write_config,
)
from fetalhc.model.config import SKIP_STAGES, ModelConfig
from fetalhc.model.freeze import apply_strategy, set_train_mode
from fetalhc.model.preprocess import INPUT_DESCRIPTIONS
from fetalhc.model.strategies import resolve
from fetalhc.model.unet import build_model, count_parameters, measure_skip_rms
from fetalhc.training.config import TrainConfig, without_later_defaults
from fetalhc.training.datasets import (
    CachedSet,
    FullSet,
    epoch_seed,
    iterate_batches,
    iterate_crop_batches,
    training_set,
)
from fetalhc.training.loop import (
    autocast_dtype,
    distilled,
    evaluate,
    learning_rate,
    pick_device,
    train_one_epoch,
)
from fetalhc.training.plots import plot_learning_curve

VAL_KEYS = ("val_dice", "val_paper_pa", "val_paper_dice", "val_paper_miou")
log = logging.getLogger(__name__)


@dataclass
class Progress:
    """How far a run is: the next epoch, the best validation score, the history rows and
    the training seconds so far (restored from resume.pt when a run goes on)."""

    start_epoch: int = 1
    best: float = -1.0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Network:
    """The model of a run with what config.json records about it."""

    model: nn.Module
    config: ModelConfig
    trainable: int


class Trainer:
    """Trains one run into its folder: datasets, model, the epoch loop (`train_one_epoch`,
    `evaluate`), checkpoints and history; resumable from the last finished epoch."""

    def __init__(self, config: TrainConfig, out: str | Path, resume: bool = False) -> None:
        config.validate()
        self.config = config
        self.out = Path(out)
        self.resume = resume
        self.strategy = resolve(config.strategy)
        if config.skip_rescale and self.strategy.arch != "smp-unet":
            raise FetalHCError(
                f"skip_rescale: strategy {self.strategy.name!r} has no encoder skips"
            )
        self.device = pick_device(config.device)
        self.amp_dtype = autocast_dtype(config.precision, self.device)

    # ------------------------------------------------------------ set-up
    def _prepare_out(self) -> dict | None:
        config_path = self.out / CONFIG_NAME
        if config_path.exists() and not self.resume:
            if (self.out / "resume.pt").exists() or (self.out / "last.safetensors").exists():
                raise FetalHCError(
                    f"{self.out}: holds a run already; resume it (--resume) or use a new folder"
                )
        if self.resume and (self.out / "resume.pt").exists():
            previous = read_config(config_path).get("train", {})
            if not isinstance(previous, dict):
                raise FetalHCError(f"{config_path}: no 'train' settings; start a new run folder")
            # a run made before a setting existed ran with that setting's default
            recorded = self._recorded_train()
            mine, previous = without_later_defaults(recorded), without_later_defaults(previous)
            changed = [
                k
                for k in recorded
                if k not in ("epochs", "device") and previous.get(k) != mine.get(k)
            ]
            if changed:
                raise FetalHCError(f"resuming with different settings: {', '.join(changed)}")
            return load_resume_state(self.out / "resume.pt")
        return None

    def _records(self) -> tuple[list[Record], list[Record]]:
        split = read_split(self.config.split)
        records = {r.filename: r for r in load_labelled(self.config.data)}
        if not records:
            raise FetalHCError(f"{self.config.data}: no labelled images found")

        def part(names: list[str]) -> list:
            missing = [n for n in names if n not in records]
            if missing:
                raise FetalHCError(
                    f"{len(missing)} split file(s) not in {self.config.data}, e.g. {missing[0]}"
                )
            return [records[n] for n in names]

        train_names = sorted(n for p in self.config.train_parts for n in part_files(split, p))
        if not train_names:
            raise FetalHCError(f"split part(s) {'+'.join(self.config.train_parts)} are empty")
        if self.config.train_images:
            if self.config.train_images > len(train_names):
                raise FetalHCError(
                    f"train_images {self.config.train_images}: the training part(s) hold only "
                    f"{len(train_names)} images"
                )
            train_names = sorted(
                nested_order(train_names, self.config.seed)[: self.config.train_images]
            )
        elif self.config.fraction < 1:
            train_names = nested_subset(train_names, self.config.fraction, self.config.seed)
        val_names = part_files(split, self.config.val_part) if self.config.val_part else []
        return part(train_names), part(val_names)

    def _teachers(self) -> list[nn.Module]:
        """The distillation teachers, frozen, in eval mode; they must read the student's
        input the same way (normalisation), and a two-pass student needs two-pass teachers."""
        from fetalhc.model.checkpoint import load_model

        teachers = []
        for path in self.config.teachers:
            try:
                model, config = load_model(path)
            except (OSError, ValueError, KeyError) as exc:
                raise FetalHCError(f"teacher {path}: cannot load ({exc})") from None
            model_config = config.get("model", {})
            if model_config.get("normalization", "imagenet") != self.config.normalization:
                raise FetalHCError(
                    f"teacher {path}: normalization {model_config.get('normalization')!r}, "
                    f"the student's is {self.config.normalization!r}"
                )
            if bool(model_config.get("head_crop")) != bool(self.config.head_crop):
                raise FetalHCError(f"teacher {path}: one-pass and two-pass models cannot mix")
            for p in model.parameters():
                p.requires_grad_(False)
            teachers.append(model.eval().to(self.device, memory_format=torch.channels_last))
        return teachers

    def _network(self) -> Network:
        s = self.strategy
        mc = ModelConfig(
            arch=s.arch,
            encoder=self.config.encoder,
            decoder_channels=list(self.config.decoder_channels),
            image_size=self.config.image_size,
            normalization=self.config.normalization,
            head_crop=self.config.head_crop,
            # placeholders until measured on the first batch (or restored on resume)
            skip_rms=[1.0] * SKIP_STAGES if self.config.skip_rescale else [],
        )
        torch.manual_seed(self.config.seed)
        weights = self.config.encoder_weights if s.loads_encoder_weights else "none"
        model = build_model(mc, encoder_weights=weights)
        trainable = apply_strategy(model, s)
        model = model.to(self.device).to(memory_format=torch.channels_last)
        return Network(model, mc, trainable)

    # ------------------------------------------------------------ the loop
    def run(
        self, datasets: tuple[CachedSet | FullSet, CachedSet | FullSet | None] | None = None
    ) -> dict:
        """Train (or go on training) and return the summary. `datasets` (train, val) replace
        the HC18 folder + split of the config, e.g. from `training_set_from_arrays`."""
        with exclusive_folder(self.out):  # one trainer per run folder
            return self._run(datasets)

    def _run(self, datasets: tuple[CachedSet | FullSet, CachedSet | FullSet | None] | None) -> dict:
        c = self.config
        state = self._prepare_out()
        records = self._records() if datasets is None else None
        net = self._network()
        teachers = self._teachers()  # checked before the run folder is made
        params = [p for p in net.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=c.lr)
        scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        progress = self._restore(net.model, optimizer, scaler, state) if state else Progress()
        self.out.mkdir(parents=True, exist_ok=True)
        self._copy_split()
        if records is not None:
            train = training_set(c, records[0], desc="decode train")
            val = training_set(c, records[1], desc="decode val") if records[1] else None
        else:
            train, val = datasets
        counts = (len(train), len(val) if val is not None else 0)
        if c.skip_rescale:
            self._set_skip_rms(net, train, measure=state is None)
        write_config(self.out / CONFIG_NAME, self._config_json(net, counts))
        steps = math.ceil(len(train) / c.batch_size)
        bar = tqdm(
            total=steps * c.epochs,
            initial=steps * (progress.start_epoch - 1),
            desc=f"train {self.strategy.name}",
            unit="batch",
            dynamic_ncols=True,
            disable=None,
        )
        for epoch in range(progress.start_epoch, c.epochs + 1):
            t0 = time.perf_counter()
            seed = epoch_seed(c.seed, epoch)
            torch.manual_seed(seed)

            def step(losses: list[float], epoch: int = epoch) -> None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{np.mean(losses):.4f}")

            batches = self._batches(train, seed)
            if teachers:
                batches = distilled(
                    batches, teachers, c.teacher_weight, self.device, self.amp_dtype
                )
            losses = train_one_epoch(
                net.model,
                optimizer,
                scaler,
                batches,
                loss=c.loss,
                lr=learning_rate(c, epoch),
                bn_mode=c.bn_mode,
                device=self.device,
                amp_dtype=self.amp_dtype,
                on_step=step,
            )
            train_time = time.perf_counter() - t0
            val_row = (
                evaluate(
                    net.model,
                    self._batches(val, None),
                    loss=c.loss,
                    device=self.device,
                    amp_dtype=self.amp_dtype,
                )
                if val is not None
                else {"val_loss": math.nan}
            )
            progress.seconds += time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                "val_loss": val_row["val_loss"],
                **{k: val_row.get(k, math.nan) for k in VAL_KEYS},
                "images_per_s": len(train) / train_time,
                "seconds": time.perf_counter() - t0,
            }
            self._end_of_epoch(net.model, optimizer, scaler, progress, row)
        bar.close()
        summary = {
            "epochs": c.epochs,
            "best_val_dice": progress.best if val is not None else None,
            "train_seconds": progress.seconds,
            "trainable_params": net.trainable,
            "total_params": count_parameters(net.model),
        }
        record = self._config_json(net, counts)
        record["result"] = summary
        write_config(self.out / CONFIG_NAME, record)
        return summary

    def _restore(self, model: nn.Module, optimizer, scaler, state: dict) -> Progress:
        """Model, optimiser, AMP scaler and progress from resume.pt."""
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if "scaler" in state:
                scaler.load_state_dict(state["scaler"])
            history = [
                dict(zip(state["history_keys"], row, strict=True)) for row in state["history"]
            ]
            for row in history:
                row["epoch"] = int(row["epoch"])
            return Progress(
                start_epoch=int(state["epoch"]) + 1,
                best=float(state["best_dice"]),
                history=history,
                seconds=float(state["seconds"]),
            )
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise FetalHCError(
                f"{self.out / 'resume.pt'}: does not hold this run's state "
                f"({type(exc).__name__}); start a new run folder"
            ) from None

    def _set_skip_rms(self, net: Network, train, measure: bool) -> None:
        """Measure the skip constants on epoch 1's first batch (a new run) or take them from
        the restored weights (resume); either way config.json records them."""
        if measure:
            set_train_mode(net.model, self.config.bn_mode)  # the statistics training sees
            x, _ = next(iter(self._batches(train, epoch_seed(self.config.seed, 1))))
            rms = measure_skip_rms(net.model, x.to(self.device))
            net.model.skip_scale.rms.copy_(torch.tensor(rms))
        net.config.skip_rms = [float(v) for v in net.model.skip_scale.rms]

    def _copy_split(self) -> None:
        """The run folder is self-contained: it keeps the split it was trained with."""
        if not self.config.split:
            return
        split_copy = self.out / "split.csv"
        if Path(self.config.split).resolve() != split_copy.resolve():
            # byte for byte (a study identifies its cells by the split's hash)
            with atomic_path(split_copy) as tmp:
                shutil.copyfile(self.config.split, tmp)

    def _batches(self, data, seed: int | None):
        """Training batches (with a seed: shuffled and augmented) or validation batches."""
        c = self.config
        if c.head_crop:
            return iterate_crop_batches(
                data,
                c.batch_size,
                c.image_size[0],
                c.head_crop,
                seed=seed,
                strong=c.augment == "strong",
                normalization=c.normalization,
            )
        return iterate_batches(
            data,
            c.batch_size,
            seed=seed,
            augment=seed is not None,
            strong=c.augment == "strong",
            normalization=c.normalization,
        )

    def _end_of_epoch(
        self, model: nn.Module, optimizer, scaler, progress: Progress, row: dict
    ) -> None:
        """Checkpoints (best, last, resume state) and history, all written atomically."""
        epoch = row["epoch"]
        progress.history.append(row)
        score = row["val_dice"] if not math.isnan(row["val_dice"]) else float(epoch)
        improved = score > progress.best
        if improved:
            progress.best = score
            save_weights(model, self.out / "best.safetensors", {"epoch": epoch})
        save_weights(model, self.out / "last.safetensors", {"epoch": epoch})
        save_resume_state(
            self.out / "resume.pt",
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best_dice": progress.best,
                "history_keys": list(row),
                "history": [[float(v) for v in r.values()] for r in progress.history],
                "seconds": progress.seconds,
            },
        )
        self._write_history(progress.history)
        log.info(
            "epoch %d/%d  loss %.4f  val Dice %.4f%s  %.1f img/s",
            epoch,
            self.config.epochs,
            row["train_loss"],
            row["val_dice"],
            " *" if improved else "",
            row["images_per_s"],
        )

    # ------------------------------------------------------------ outputs
    def _config_json(self, net: Network, counts: tuple[int, int]) -> dict:
        return {
            "fetalhc_version": __version__,
            "model": net.config.to_dict(),
            "strategy": {
                "name": self.strategy.name,
                "spec": self.strategy.spec,
                "label": self.strategy.label,
                "random_encoder": self.strategy.random_encoder,
                "trainable_params": net.trainable,
            },
            "train": self._recorded_train(),
            "images": {"train": counts[0], "val": counts[1]},
            "input": INPUT_DESCRIPTIONS[net.config.normalization],
            "precision": str(self.amp_dtype or "fp32"),
            "device": str(self.device),
        }

    def _recorded_train(self) -> dict:
        """The config as recorded in config.json: paths relative to the run folder, so a
        run folder holds no absolute path of the machine it ran on."""
        train = asdict(self.config)
        out = self.out.resolve()
        if self.config.data:
            train["data"] = os.path.relpath(Path(self.config.data).resolve(), out)
        if self.config.split:
            train["split"] = "split.csv"  # the copy inside the run folder
        if self.config.encoder_weights not in ("imagenet", "none"):
            weights = Path(self.config.encoder_weights).resolve()
            train["encoder_weights"] = os.path.relpath(weights, out)
        return train

    def _write_history(self, history: list[dict]) -> None:
        write_csv(self.out / "history.csv", history)
        title = f"{self.out.name} ({self.strategy.name})"
        plot_learning_curve(history, self.out / "learning_curve.png", title)
