"""PNG of a run's training curves, drawn from its ``metrics.jsonl``."""
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

from data.atomic import atomic_path  # noqa: E402


def read_metrics(path):
    """The records of a ``metrics.jsonl`` file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(records, png_path, title=""):
    """Accuracy, cross-entropy and learning rate per epoch, written atomically to `png_path`."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_acc, ax_ce, ax_lr) = plt.subplots(1, 3, figsize=(15, 4.2))
    for side, style in (("train", "--"), ("val", "-")):
        for name in ("accuracy", "product_accuracy"):
            values = [r.get(side, {}).get(name) for r in records]
            if any(v is not None for v in values):
                ax_acc.plot(epochs, values, style, marker="o", label="%s %s" % (side, name))
        values = [r.get(side, {}).get("cross-entropy") for r in records]
        if any(v is not None for v in values):
            ax_ce.plot(epochs, values, style, marker="o", label="%s cross-entropy" % side)
    ax_lr.plot(epochs, [r.get("lr") for r in records], marker="o")
    ax_lr.set_yscale("log")
    for ax, name in ((ax_acc, "accuracy"), (ax_ce, "cross-entropy"), (ax_lr, "learning rate (end of epoch)")):
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax is not ax_lr:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
