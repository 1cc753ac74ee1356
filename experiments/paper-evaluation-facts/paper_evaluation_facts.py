"""What the paper's numbers measure: facts read from the authors' public repository
(13204942/FT_Methods_for_Fetal_Head_Segmentation, last public state), each with the file
and notebook cell it comes from; written to results/study-paper/paper_evaluation_facts.md.

    python experiments/paper-evaluation-facts/paper_evaluation_facts.py REPO   # a clone or a bare git directory

Reads only: the two mask archives' file lists (data/train_masks.zip, data/test_masks.zip),
the notebooks' cell sources and the names of the loss logs. Runs none of the notebooks.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

NOTEBOOK = "TransferLearning_mobilenet_FetalHead_US.ipynb"
OUT = Path("results/study-paper/paper_evaluation_facts.md")
# trainable parameters of the paper's rows, as its loss-log names spell them (222m = 2.22 M)
LOG_ROWS = {
    "44m": "decoder (D-0..4 + head, 4.4 M)",
    "222m": "encoder (E-0..4, 2.22 M)",
    "376m": "D-0 (3.76 M)",
    "424m": "D-0,1 (4.24 M)",
    "436m": "D-0,1,2 (4.36 M)",
    "0164m": "D-2,3,4 (0.164 M)",
    "000698m": "D-4 (6,980)",
}


class Repo:
    """Files of the repository's newest commit, from a work tree or a (bare) git dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.git = (path / "HEAD").is_file() or (path / ".git").exists()

    def read(self, name: str) -> bytes:
        if (self.path / name).is_file():
            return (self.path / name).read_bytes()
        return subprocess.run(
            ["git", "-C", str(self.path), "show", f"HEAD:{name}"], capture_output=True, check=True
        ).stdout

    def names(self) -> list[str]:
        out = subprocess.run(
            ["git", "-C", str(self.path), "ls-tree", "-r", "--name-only", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return out.splitlines()


def subject(name: str) -> str:
    return re.match(r"(\d+)_", Path(name).name).group(1)


def zip_images(repo: Repo, name: str) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(repo.read(name))) as z:
        return sorted(
            Path(n).name.replace("_Annotation", "")
            for n in z.namelist()
            if n.endswith(".png") and "__MACOSX" not in n
        )


def cells(repo: Repo, notebook: str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(repo.read(notebook))["cells"]]


def find(sources: list[str], text: str) -> int:
    """The index of the first cell holding `text` (a fact must be found, or this fails)."""
    hits = [i for i, s in enumerate(sources) if text in s]
    if not hits:
        raise SystemExit(f"not found in {NOTEBOOK}: {text!r}")
    return hits[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path)
    args = parser.parse_args()
    repo = Repo(args.repo)
    train = zip_images(repo, "data/train_masks.zip")
    test = zip_images(repo, "data/test_masks.zip")
    shared_files = sorted(set(train) & set(test))
    train_subjects = {subject(n) for n in train}
    test_subjects = {subject(n) for n in test}
    overlap = sorted(test_subjects & train_subjects, key=int)
    overlap_images = [n for n in test if subject(n) in train_subjects]
    src = cells(repo, NOTEBOOK)
    c_dirs = find(src, 'VAL_IMG_DIR = root_path + "HC18_UNet_orig/val_images/"')
    c_test = find(src, 'TEST_HC18_IMG_DIR = root_path + "HC18_UNet_orig/val_images/"')
    c_full = find(src, "full_dataset = HeadDataset(")
    assert "transform=train_transform" in src[c_full]
    c_split = find(src, "torch.utils.data.random_split(full_dataset, [train_size, val_size])")
    seeded = any("manual_seed" in s or "Generator" in s for s in src[: c_split + 1])
    c_name = find(src, "model_name = f'unet_frozen_{ENCODER}'")
    c_save = find(src, 'save_checkpoint(checkpoint, save_path, f"{model_name}_')
    saved = re.search(r'f"\{model_name\}(_[^"]+\.pth\.tar)"', src[c_save]).group(1)
    c_load = find(src, 'checkpoint_name = save_path + f"{model_name}_02062023_model.pth.tar"')
    c_subset = find(src, "train_ds, _ = torch.utils.data.random_split(train_ds, [train_length")
    c_subset_load = find(src, "train_ds = torch.load(save_path + 'split_train_size_50.pt')")
    logs = sorted({n for n in repo.names() if n.startswith("loss/")})
    random_logs = sorted({re.search(r"global_(\w+?)_RW", n).group(1) for n in logs if "_RW" in n})
    lines = [
        "# What the paper's numbers measure (read from its repository)",
        "",
        "Read by `experiments/paper-evaluation-facts/paper_evaluation_facts.py` from the authors' public repository "
        "(13204942/FT_Methods_for_Fetal_Head_Segmentation, last public state); cells are "
        f"0-based indices into `{NOTEBOOK}`. Facts only; no code of theirs is used.",
        "",
        f"- **Test images.** The test cell (cell {c_test}) reads `HC18_UNet_orig/val_images/`, "
        f"the folder the notebook calls validation (cell {c_dirs}); its masks, "
        f"`data/test_masks.zip`, list {len(test)} images of {len(test_subjects)} subjects. "
        f"The training masks, `data/train_masks.zip`, list {len(train)} images of "
        f"{len(train_subjects)} subjects. The two share {len(shared_files)} files, but "
        f"**{len(overlap)} of the {len(test_subjects)} test subjects ({len(overlap_images)} "
        "of the test images) also have images in training**: HC18 holds several images of "
        "one subject (`010_HC`, `010_2HC`), and the split is per image.",
        f"- **Validation.** The 80/20 split of the {len(train)} training images is "
        f"`random_split` per image (cell {c_split}), "
        + ("seeded" if seeded else "**unseeded** (no `manual_seed` or generator before it)")
        + f", of a dataset built with the *training* transform (cell {c_full}: "
        "`transform=train_transform`, i.e. rotation and flips): validation images are "
        "augmented, and the validation part differs from run to run.",
        f"- **Which checkpoint is tested.** `model_name` is `unet_frozen_mobilenet_v2` for "
        f"every frozen strategy (cell {c_name}); the save cell writes "
        f"`{{model_name}}{saved}` (cell {c_save}), the test cell loads "
        f"`{{model_name}}_02062023_model.pth.tar` (cell {c_load}). In the public state the "
        "name tested is not the name saved, and one name serves every frozen strategy: "
        "which run each row's test figures come from cannot be told from the notebook.",
        f"- **Low data.** A training subset is drawn by `random_split` of the training part "
        f"(cell {c_subset}) and saved; later runs load a saved subset "
        f"(`split_train_size_50.pt`, cell {c_subset_load}) but validate on the fresh, "
        f"unseeded split of cell {c_split}, which can overlap the loaded subset.",
        f"- **Training logs.** `loss/` holds {len(logs)} files; random-weight (`_RW`) logs "
        f"exist only for {', '.join(LOG_ROWS.get(r, r) for r in random_logs)}. **No log of "
        "the random-init encoder row (E-0..4*, 2.22 M) exists**, so its table row cannot be "
        "traced to a logged run.",
        "",
        "What this means for comparing with the paper's table: its test figures are on "
        "images whose subjects the model may have seen in training (a per-image split), "
        "selected by augmented, unseeded validation, from checkpoints whose names do not "
        "identify the strategy. fetalhc's study splits by subject, validates on "
        "unaugmented images, and tests each cell's own best checkpoint.",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
