"""The validation-accuracy table: ours beside the reference's, as Markdown and as a PNG.

Our sections come from `predict.ensembling.evaluate` (prediction folders of a validation
input) and from training logs (`models.training_log`); the reference's from `predict.reference`.
"""
import os
from dataclasses import dataclass, field

from data.atomic import atomic_open, atomic_path
from predict import reference
from predict.outputs import split_variant, variant_name


@dataclass
class Section:
    title: str
    columns: list
    rows: list = field(default_factory=list)
    note: str = ""


def fmt(value):
    """Table cell text: accuracies (floats in [0, 1]) with up to 6 decimals and at least 3,
    other numbers as they come, '' for missing values."""
    if value is None:
        return ""
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        text = f"{value:.6f}".rstrip("0")
        return text + "0" * max(0, 3 - len(text.split(".")[1]))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _mode_for_combiners(variants):
    modes = [split_variant(v)[1] for v in variants]
    return "none" if "none" in modes else modes[0]


def model_sections(evaluation):
    models, combiner = evaluation["models"], evaluation["combiner"]
    hashed = any("hash_accuracy" in s for m in models for s in m["variants"].values())
    sections = []

    rows = []
    for m in models:
        primary = variant_name(combiner, _mode_for_combiners(m["variants"]))
        score = m["variants"].get(primary, {})
        info = m["manifest"].get("model", {})
        rows.append([m["name"], info.get("model"), info.get("epoch"), m["image_accuracy"], score.get("accuracy"),
                     score.get("hash_accuracy"), m["manifest"].get("tta"), m["manifest"].get("products_per_second")])
    sections.append(Section(
        f"Our models: validation accuracy ({evaluation['products']} products)",
        ["model", "network", "epoch", "image acc", f"product acc ({combiner})", "+ product hash", "TTA", "products/s"],
        rows, "image acc: top-1 of each image (test-time views averaged); product acc: top-1 of the product's "
              "combined vector; + product hash: with the product-hash post-processing"
              f"{'' if hashed else ' (not run)'}."))

    combiners = list(dict.fromkeys(split_variant(v)[0] for m in models for v in m["variants"]))
    mode = _mode_for_combiners(models[0]["variants"])
    rows = [[c] + [m["variants"].get(variant_name(c, mode), {}).get("accuracy") for m in models]
            + [reference.COMBINERS.get(c)] for c in combiners]
    sections.append(Section(f"Per-product combiners (product accuracy, MD5 mode {mode})",
                            ["combiner"] + [m["name"] for m in models] + ["reference (Xception)"], rows))

    modes = list(dict.fromkeys(split_variant(v)[1] for m in models for v in m["variants"]))
    ensembles = {(e["method"], split_variant(e["variant"])[1]): e for e in evaluation["ensembles"]}
    methods = list(dict.fromkeys(e["method"] for e in evaluation["ensembles"]))
    rows = [[md] + [m["variants"].get(variant_name(combiner, md), {}).get("accuracy") for m in models]
            + [ensembles.get((method, md), {}).get("accuracy") for method in methods]
            + [reference.MD5_MODES.get(md)] for md in modes]
    sections.append(Section(f"Image MD5 modes (product accuracy, combiner {combiner})",
                            ["MD5 mode"] + [m["name"] for m in models] + [f"ensemble {x}" for x in methods]
                            + ["reference (14-model ensemble)"], rows))

    if evaluation["ensembles"]:
        rows = [[f"{e['models']} models, {e['method']}", e["variant"], e["accuracy"], e.get("hash_accuracy"),
                 e.get("hash_changed")] for e in evaluation["ensembles"]]
        sections.append(Section("Ensembles (product accuracy)",
                                ["ensemble", "variant", "accuracy", "+ product hash", "changed by hash"], rows))
    return sections


def at_reference_epoch(log):
    """``(cell, remark)`` for a log named after a reference model (``M01``...): the log's
    validation accuracy at the epoch the reference's table reports (its ``epochs``, the
    checkpoint used), and where the table disagrees with the log, how. ``(None, None)``
    for other logs."""
    model = reference.MODELS_BY_KEY.get(log.name)
    if model is None:
        return None, None
    record = log.epochs.get(model.epochs - 1)
    accuracy = None if record is None else record.accuracy
    if accuracy is None:
        final_epoch, final = log.final
        return f"not logged (epoch {model.epochs})", (f"the table says {model.epochs} epochs; the log ends at "
                                                      f"epoch {final_epoch + 1} with {fmt(final)}")
    remark = None if accuracy == model.val_acc else \
        f"the table says {fmt(model.val_acc)}; the log has {fmt(accuracy)} at epoch {model.epochs}"
    return f"{fmt(accuracy)} (epoch {model.epochs})", remark


def log_section(logs):
    rows = []
    for log in logs:
        final_epoch, final = log.final
        best_epoch, best = log.best
        rows.append([log.name, final_epoch + 1, final, f"{fmt(best)} (epoch {best_epoch + 1})",
                     *at_reference_epoch(log), None if log.mean_speed is None else round(log.mean_speed, 1)])
    return Section("Training logs (image-level validation accuracy)",
                   ["log", "epochs", "final val-acc", "best val-acc", "at the reference's epoch",
                    "vs the reference's table", "samples/s"], rows,
                   "From MXNet training logs; epochs count from 1 like the reference's table. For the reference's "
                   "own logs (M01...M14), the accuracy at the epoch its table reports, and where the table "
                   "disagrees with the log.")


def reference_sections():
    return [
        Section("Reference: single models (image-level validation accuracy)",
                ["No.", "network", "transfer from", "dataset", "epochs", "val-acc"],
                [list(m) for m in reference.MODELS],
                "Datasets A and B: 5 % validation split; C: MD5-deduplicated, not comparable. Where the table "
                "disagrees with the reference's own logs: "
                + ", ".join(f"{key} ({text})" for key, text in reference.TABLE_VS_LOGS.items()) + "."),
        Section("Reference: ensembles (Kaggle leaderboard)", ["ensemble", "private", "public"],
                [list(e) for e in reference.ENSEMBLES]),
    ]


def to_markdown(sections):
    out = []
    for s in sections:
        out += [f"### {s.title}", "", "| " + " | ".join(s.columns) + " |", "|" + "---|" * len(s.columns)]
        out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in s.rows]
        out += ["", s.note, ""] if s.note else [""]
    return "\n".join(out)


def write_markdown(path, ours, theirs):
    text = "## Validation accuracy: this reproduction\n\n" + to_markdown(ours) + \
           "\n## The reference (3rd place)\n\n" + to_markdown(theirs)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def save_png(path, ours, theirs):
    """Our sections on the left, the reference's on the right, drawn as tables."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title_lines = 1.8                      # section title and the gap above it

    def lines(sections):
        return sum(len(s.rows) + 1 + title_lines for s in sections)

    total = max(lines(ours), lines(theirs))
    fig = plt.figure(figsize=(24, 0.24 * total + 0.4))
    for column, sections in enumerate((ours, theirs)):
        ax = fig.add_axes([0.01 + 0.5 * column, 0.01, 0.47, 0.98])
        ax.axis("off")
        top = 1.0
        for s in sections:
            ax.text(0, top - 0.5 * title_lines / total, s.title, fontsize=10, weight="bold", va="center")
            top -= title_lines / total
            if not s.rows:
                continue
            height = (len(s.rows) + 1) / total
            table = ax.table(cellText=[[fmt(v) for v in r] for r in s.rows], colLabels=s.columns, cellLoc="left",
                             bbox=[0, top - height, 1, height])
            table.auto_set_font_size(False)
            table.set_fontsize(8)
            top -= height
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def write_table(prefix, ours, theirs=None):
    """`prefix`.md and `prefix`.png; return the Markdown text."""
    theirs = reference_sections() if theirs is None else theirs
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    text = write_markdown(prefix + ".md", ours, theirs)
    save_png(prefix + ".png", ours, theirs)
    return text
