"""A run's learning-curve figure."""

from __future__ import annotations

from pathlib import Path

from fetalhc.io.files import atomic_path


def plot_learning_curve(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in history], "s-", label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(epochs, [100 * r["val_dice"] for r in history], "g^-", label="val Dice")
    ax2.set_ylim(0, 100)  # fixed axis: curves of different runs can be compared by eye
    ax2.set_ylabel("val Dice (%)")
    fig.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
