"""`fetalhc compare`: train + evaluate each cell of a study, resumable, in local processes
or on Ray; the report is written at the end."""

from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

from fetalhc.errors import FetalHCError
from fetalhc.io.files import write_json
from fetalhc.study.grid import (
    CELL_DONE,
    Cell,
    StudyConfig,
    cell_config,
    config_identity,
    degenerate_reason,
    identity_hash,
    load_study,
    read_cell,
    stale_keys,
)

log = logging.getLogger(__name__)


def prepare_split(study: StudyConfig, out: Path) -> Path:
    if isinstance(study.split, str):
        return Path(study.path(study.split))
    from fetalhc.data.hc18 import load_labelled
    from fetalhc.data.split import group_split, write_split

    target = out / "split.csv"
    if not target.exists():
        names = [r.filename for r in load_labelled(study.path(study.data))]
        s = study.split
        write_split(
            target, group_split(names, s.get("val", 0.1), s.get("test", 0.2), s.get("seed", 0))
        )
    return target


def run_cell(
    cell: dict, study: dict, split: str, out: str, threads: int, rerun_stale: bool = False
) -> dict:
    """Train and evaluate one cell in its own folder; resumable; returns its summary.

    A finished or half-trained cell whose recipe differs from the study's is never reused:
    it is re-run with `rerun_stale`, otherwise the study stops with the differing keys."""
    from fetalhc.inference.evaluate import EvalOptions, evaluate
    from fetalhc.model.unet import set_threads
    from fetalhc.training.trainer import Trainer

    set_threads(threads)  # this worker process's own setting
    c = Cell(**cell)
    folder = Path(out) / "runs" / c.name
    config = cell_config(study["train"], c, study["data"], split, study["encoder_weights"])
    identity = config_identity(config, split, study["evaluate_part"])
    changed = stale_keys(folder, identity, split)
    if changed:
        if not rerun_stale:
            raise FetalHCError(
                f"cell {c.name} was run with other settings ({', '.join(changed)}); re-run it "
                "with --rerun-stale or use a new --out"
            )
        shutil.rmtree(folder)
    done = folder / CELL_DONE
    if done.exists():
        return read_cell(done)
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
    result = cell_record(c, identity, trained, summary, folder, seconds)
    write_json(done, result)
    return result


def cell_record(
    cell: Cell, identity: dict, trained: dict, summary: dict, folder: Path, seconds: float = 0.0
) -> dict:
    """What `cell.json` holds: the cell, its recipe identity, the training summary and the
    evaluation's means (`summary`: evaluate's summary.json; `seconds`: its wall time, used
    where the summary has no network time)."""
    metrics = {k: v["mean"] for k, v in summary["metrics"].items()}
    return {
        "cell": asdict(cell),
        "name": cell.name,
        "config_hash": identity_hash(identity),
        "config": identity,
        "train": trained,
        "metrics": metrics,
        "eval_images": summary["images"],
        "no_head": summary["no_head"],
        "degenerate": degenerate_reason(
            metrics, summary["no_head"], summary["images"], folder / "history.csv"
        ),
        "inference_ms_per_image": 1000
        * summary.get("network_seconds", seconds)
        / max(summary["images"], 1),
    }


def _safe_run_cell(*args) -> dict:
    try:
        return run_cell(*args)
    except FetalHCError as exc:
        return {"error": str(exc), "cell": args[0]}
    except Exception:  # noqa: BLE001 - one broken cell must not stop the grid
        return {"error": traceback.format_exc(limit=3), "cell": args[0]}


def check_stale(cells: list[dict], payload: dict, split: str, out: Path, rerun: bool) -> None:
    """Before any work: every existing cell folder must match the YAML's recipe. Stale ones
    are deleted with `rerun`; otherwise the study stops, naming them and what changed."""
    stale = []
    for cell in cells:
        c = Cell(**cell)
        folder = out / "runs" / c.name
        config = cell_config(
            payload["train"], c, payload["data"], split, payload["encoder_weights"]
        )
        identity = config_identity(config, split, payload["evaluate_part"])
        changed = stale_keys(folder, identity, split)
        if changed:
            if rerun:
                shutil.rmtree(folder)
            else:
                stale.append(f"{c.name} ({', '.join(changed)})")
    if stale:
        more = f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        raise FetalHCError(
            f"{len(stale)} cell(s) in {out} were run with other settings: "
            f"{'; '.join(stale[:3])}{more}. Use --rerun-stale to re-run them, or a new --out"
        )


def _relative(path: str, start: Path) -> str:
    return path if path in ("imagenet", "none") else os.path.relpath(path, start)


def run_study(
    config_path: Path,
    out: Path,
    workers: int | None = None,
    ray_address: str | None = None,
    rerun_stale: bool = False,
) -> list[dict]:
    study = load_study(config_path)
    if out.exists() and not out.is_dir():
        raise FetalHCError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetalHCError(f"--out {out}: cannot create ({exc.strerror})") from None
    split = str(prepare_split(study, out))
    payload = {
        "data": study.path(study.data),
        "encoder_weights": study.encoder_weights
        if study.encoder_weights in ("imagenet", "none")
        else study.path(study.encoder_weights),
        "train": study.train,
        "evaluate_part": study.evaluate_part,
    }
    cells = [asdict(c) for c in study.cells()]
    check_stale(cells, payload, split, out, rerun_stale)
    record = {
        k: _relative(v, out) if k in ("data", "encoder_weights") else v for k, v in payload.items()
    }
    record["split"] = _relative(split, out)
    record["config"] = _relative(str(config_path), out)
    write_json(out / "study.json", record)
    pending = [c for c in cells if not (out / "runs" / Cell(**c).name / CELL_DONE).exists()]
    log.info("%d cells, %d already done", len(cells), len(cells) - len(pending))
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
    from fetalhc.study.report import write_report

    write_report(out)
    return results


def _report_cell(result: dict) -> None:
    if "error" in result:
        log.warning("cell %s failed: %s", Cell(**result["cell"]).name, result["error"].strip())
    else:
        log.info("cell %s: Dice %.4f", result["name"], result["metrics"]["dice"])


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
