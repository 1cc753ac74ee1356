"""`fetalhc compare`: a grid of train + evaluate cells, resumable, local processes or Ray."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import yaml

from .errors import FetalHCError
from .fileio import write_json

CELL_DONE = "cell.json"


@dataclass(frozen=True)
class Cell:
    strategy: str
    seed: int
    fraction: float = 1.0
    encoder: str = "mobilenet_v2"
    image_size: str = "320x224"

    @property
    def name(self) -> str:
        parts = [self.strategy, f"f{int(round(self.fraction * 100)):03d}", f"s{self.seed}"]
        if self.encoder != "mobilenet_v2":
            parts.append(self.encoder)
        parts.append(self.image_size)
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
        default_size = str(self.train.get("image_size", "320x224"))
        for grid in self.grids:
            for strategy, seed, fraction, encoder, size in itertools.product(
                grid["strategies"],
                grid.get("seeds", [0]),
                grid.get("fractions", [1.0]),
                grid.get("encoders", ["mobilenet_v2"]),
                grid.get("image_sizes", [default_size]),
            ):
                cell = Cell(str(strategy), int(seed), float(fraction), str(encoder), str(size))
                if cell not in cells:
                    cells.append(cell)
        return cells

    def path(self, value: str) -> str:
        """Paths in the YAML are relative to the YAML file."""
        p = Path(os.path.expanduser(value))
        return str(p if p.is_absolute() else (self.base / p))


def load_study(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FetalHCError(f"{path}: study file not found") from None
    except yaml.YAMLError as exc:
        raise FetalHCError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or "data" not in raw or "grids" not in raw:
        raise FetalHCError(f"{path}: a study needs 'data' and 'grids'")
    known = {k: raw[k] for k in StudyConfig.__dataclass_fields__ if k in raw and k != "base"}
    unknown = set(raw) - set(known)
    if unknown:
        raise FetalHCError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    study = StudyConfig(**known, base=path.resolve().parent)
    for grid in study.grids:
        if not grid.get("strategies"):
            raise FetalHCError(f"{path}: every grid needs a list of strategies")
    from .strategies import resolve

    for cell in study.cells():
        resolve(cell.strategy)
    return study


def prepare_split(study: StudyConfig, out: Path) -> Path:
    if isinstance(study.split, str):
        return Path(study.path(study.split))
    from .data import load_labelled
    from .split import group_split, write_split

    target = out / "split.csv"
    if not target.exists():
        names = [r.filename for r in load_labelled(study.path(study.data))]
        s = study.split
        write_split(
            target, group_split(names, s.get("val", 0.1), s.get("test", 0.2), s.get("seed", 0))
        )
    return target


def run_cell(cell: dict, study: dict, split: str, out: str, threads: int) -> dict:
    """Train and evaluate one cell in its own folder; resumable; returns its summary."""
    import torch

    from .evaluate import EvalOptions, evaluate
    from .train import TrainConfig, Trainer, parse_size

    if threads:
        torch.set_num_threads(threads)
    c = Cell(**cell)
    folder = Path(out) / "runs" / c.name
    done = folder / CELL_DONE
    if done.exists():
        return json.loads(done.read_text())
    t = study["train"]
    config = TrainConfig(
        data=study["data"],
        split=split,
        strategy=c.strategy,
        encoder=c.encoder,
        encoder_weights=study["encoder_weights"],
        epochs=int(t.get("epochs", 20)),
        batch_size=int(t.get("batch_size", 10)),
        lr=float(t.get("lr", 1e-4)),
        loss=str(t.get("loss", "bce")),
        fraction=c.fraction,
        seed=c.seed,
        image_size=parse_size(c.image_size),
        precision=str(t.get("precision", "auto")),
    )
    trained = Trainer(config, folder, resume=True).run()
    t0 = time.perf_counter()
    summary = evaluate(
        folder / "best.safetensors",
        Path(study["data"]),
        Path(split),
        folder / f"eval-{study['evaluate_part']}",
        EvalOptions(part=study["evaluate_part"]),
        backend="torch",
        threads=threads,
    )
    seconds = time.perf_counter() - t0
    result = {
        "cell": asdict(c),
        "name": c.name,
        "train": trained,
        "metrics": {k: v["mean"] for k, v in summary["metrics"].items()},
        "eval_images": summary["images"],
        "inference_ms_per_image": 1000
        * summary.get("network_seconds", seconds)
        / max(summary["images"], 1),
    }
    write_json(done, result)
    return result


def _safe_run_cell(*args) -> dict:
    try:
        return run_cell(*args)
    except FetalHCError as exc:
        return {"error": str(exc), "cell": args[0]}
    except Exception:  # noqa: BLE001 - one broken cell must not stop the grid
        return {"error": traceback.format_exc(limit=3), "cell": args[0]}


def run_study(
    config_path: Path, out: Path, workers: int | None = None, ray_address: str | None = None
) -> list[dict]:
    study = load_study(config_path)
    out.mkdir(parents=True, exist_ok=True)
    split = str(prepare_split(study, out))
    payload = {
        "data": study.path(study.data),
        "encoder_weights": study.encoder_weights
        if study.encoder_weights in ("imagenet", "none")
        else study.path(study.encoder_weights),
        "train": study.train,
        "evaluate_part": study.evaluate_part,
    }
    write_json(out / "study.json", {"config": str(config_path), **payload, "split": split})
    cells = [asdict(c) for c in study.cells()]
    pending = [c for c in cells if not (out / "runs" / Cell(**c).name / CELL_DONE).exists()]
    print(f"{len(cells)} cells, {len(cells) - len(pending)} already done")
    workers = max(1, workers or study.workers)
    if ray_address:
        results = _run_ray(pending, payload, split, out, ray_address)
    elif workers == 1:
        results = []
        for cell in pending:
            results.append(_safe_run_cell(cell, payload, split, str(out), 0))
            _report_cell(results[-1])
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        results = []
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_safe_run_cell, c, payload, split, str(out), threads) for c in pending
            ]
            for fut in as_completed(futures):
                results.append(fut.result())
                _report_cell(results[-1])
    from .report import write_report

    write_report(out)
    return results


def _report_cell(result: dict) -> None:
    if "error" in result:
        print(f"cell {Cell(**result['cell']).name} failed: {result['error'].strip()}")
    else:
        print(f"cell {result['name']}: Dice {result['metrics']['dice']:.4f}")


def _run_ray(pending: list[dict], payload: dict, split: str, out: Path, address: str) -> list[dict]:
    try:
        import ray
    except ImportError:
        raise FetalHCError("--ray needs Ray: pip install 'fetalhc[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - connection errors vary by version
            raise FetalHCError(f"cannot connect to Ray at {address}: {exc}") from None
    remote = ray.remote(num_cpus=1)(_safe_run_cell)
    # Every Ray worker writes into the same study folder: it must be a shared file system.
    refs = [remote.remote(c, payload, split, str(out.resolve()), 1) for c in pending]
    results = []
    for result in ray.get(refs):
        results.append(result)
        _report_cell(result)
    return results


def cmd_compare(args: argparse.Namespace) -> int:
    results = run_study(args.config, args.out, args.workers, args.ray)
    failed = [r for r in results if "error" in r]
    print(f"{args.out / 'report.md'}: {len(results) - len(failed)} cells run, {len(failed)} failed")
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    path = write_report(args.dir)
    print(path)
    return 0


def register(add) -> None:
    p = add("compare", cmd_compare, "run a study grid (strategies x seeds x fractions)")
    p.add_argument("--config", type=Path, required=True, help="study YAML")
    p.add_argument("--out", type=Path, required=True, help="study folder")
    p.add_argument("--workers", type=int, help="parallel processes on this machine")
    p.add_argument(
        "--ray", metavar="ADDRESS", help="run cells on a Ray cluster ('local': start one)"
    )
    p = add("report", cmd_report, "rebuild a study's report from its finished cells")
    p.add_argument("dir", type=Path)
