"""`fetalhc compare --adopt RUN CELL`: a run trained and evaluated outside a study taken
as one of the study's cells.

A probe may already have trained a cell the study lists, with the same recipe, through the
same `fetalhc train` / `fetalhc evaluate`. Re-training it costs an hour of CPU for the same
numbers; this writes the study's `cell.json` for it instead — only if the run's recorded
recipe identity (every training setting, the split's content, the evaluated part) equals
the study cell's, and the run finished its epochs and was evaluated on the study's part.
Otherwise it refuses and names the keys that differ. The cell says where it came from
(`adopted_from`), and the study's report says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fetalhc.errors import FetalHCError
from fetalhc.io.files import read_json, write_json
from fetalhc.study.grid import CELL_DONE, cell_config, config_identity, load_study
from fetalhc.study.run import cell_record
from fetalhc.training.config import TrainConfig, config_from_mapping

COPIED = ("config.json", "history.csv", "learning_curve.png", "split.csv")


def adopt_run(study_yaml: Path, out: Path, run: Path, name: str) -> dict:
    """Write the study's cell `name` from `run` (see the module); the cell's record."""
    study = load_study(study_yaml)
    cells = {c.name: c for c in study.cells()}
    if name not in cells:
        raise FetalHCError(f"{name}: not a cell of {study_yaml}")
    cell = cells[name]
    split = out / "split.csv"
    if not split.is_file():
        raise FetalHCError(
            f"{out}: no split.csv: a run is adopted into a study folder whose split is written "
            "(run `fetalhc compare` on it once, or copy the split the run was trained on)"
        )
    if not (run / "config.json").is_file():
        raise FetalHCError(f"{run}: not a run folder (no config.json)")
    wanted = config_identity(
        cell_config(
            study.train,
            cell,
            study.path(study.data),
            str(split),
            study.encoder_weights
            if study.encoder_weights in ("imagenet", "none")
            else study.path(study.encoder_weights),
        ),
        split,
        study.evaluate_part,
    )
    recorded = read_json(run / "config.json")
    train = {k: v for k, v in recorded["train"].items() if k in TrainConfig.__dataclass_fields__}
    have = config_identity(config_from_mapping(train), run / "split.csv", study.evaluate_part)
    differ = sorted(k for k in set(wanted) | set(have) if wanted.get(k) != have.get(k))
    if differ:
        raise FetalHCError(f"{run} differs from cell {name} in: {', '.join(differ)}")
    result = recorded.get("result") or {}
    if result.get("epochs") != wanted["epochs"]:
        raise FetalHCError(f"{run}: trained {result.get('epochs')} epochs, not {wanted['epochs']}")
    summary_file = run / f"eval-{study.evaluate_part}" / "summary.json"
    if not summary_file.exists():
        raise FetalHCError(f"{run}: not evaluated on part {study.evaluate_part!r}")
    summary = read_json(summary_file)
    folder = out / "runs" / name
    if (folder / CELL_DONE).exists():
        raise FetalHCError(f"{folder}: the study already has this cell")
    folder.mkdir(parents=True, exist_ok=True)
    for file in COPIED:
        if (run / file).exists():
            shutil.copy2(run / file, folder / file)
    shutil.copytree(summary_file.parent, folder / summary_file.parent.name, dirs_exist_ok=True)
    record = cell_record(cell, wanted, result, summary, folder)
    record["adopted_from"] = str(Path(*run.parts[-2:]))
    write_json(folder / CELL_DONE, record)
    return record
