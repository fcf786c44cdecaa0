"""Ensembles of prediction folders, product-hash post-processing, accuracies, submission.

Everything streams the memory-mapped per-product arrays in row chunks, so the full test
set (1.77 M products x 5,270 classes per model) needs memory for one chunk per model only.

A submission must hold every product of the input: `missing_documents` lists the
documents predict could not read and gave no row (`predict --skip-bad`), which the
submission would silently miss.
"""
import contextlib
import gzip
import io
import os

import numpy as np
from tqdm import tqdm

from data.atomic import atomic_path
from predict.combine import combine_models
from predict.md5_modes import apply_product_hash
from predict.outputs import Predictions, split_variant, variant_name

CHUNK_ROWS = 4096
SUBMISSION_CHUNK = 100000


def load_predictions(folders):
    """The prediction folders, checked to cover the same products in the same order."""
    preds = [Predictions(f) for f in folders]
    if not preds:
        raise ValueError("no prediction folders given")
    first = preds[0]
    for p in preds[1:]:
        if p.classes != first.classes:
            raise ValueError(f"{p.folder} has {p.classes} classes, {first.folder} has {first.classes}")
        if len(p) != len(first) or not np.array_equal(p.ids, first.ids):
            raise ValueError(f"{p.folder} and {first.folder} do not hold the same products in the same order "
                             "(predicted from different inputs?)")
    names = [p.name for p in preds]
    if len(set(names)) != len(names):
        raise ValueError(f"prediction folders with the same model name: {names}")
    return preds


def common_variants(preds):
    """Variants stored by every folder, in the first folder's order."""
    return [v for v in preds[0].variants if all(v in p.variants for p in preds)]


def ensemble_classes(preds, variant, method="mean", weights=None, chunk_rows=CHUNK_ROWS, progress=False):
    """Predicted class per product of the ensemble of `preds` (one model: its own argmax)."""
    arrays = [p.probs(variant) for p in preds]
    n = len(preds[0])
    out = np.empty(n, np.int32)
    for start in tqdm(range(0, n, chunk_rows), desc=f"ensemble {method} {variant}", disable=not progress,
                      unit="chunk"):
        stop = min(start + chunk_rows, n)
        block = [np.asarray(a[start:stop], np.float32) for a in arrays]
        out[start:stop] = combine_models(block, weights, method).argmax(axis=1) if len(block) > 1 \
            else block[0].argmax(axis=1)
    return out


def product_hash_classes(product_hashes, dictionary, categories):
    """Per product: the class of its product hash when the training products with that hash
    all carry one category, else -1 (data.md5_dict.Md5Dictionary.products)."""
    single = dictionary.products.lookup(np.asarray(product_hashes)).single_category()
    out = np.full(len(single), -1, np.int64)
    known = single >= 0
    out[known] = categories.classes_of(single[known])
    return out


def accuracy(predicted, labels):
    labels = np.asarray(labels)
    return float(np.mean(np.asarray(predicted) == labels)) if len(labels) else float("nan")


def evaluate(preds, hash_classes=None, weights=None, methods=("mean", "geometric"), combiner=None, progress=False):
    """Validation accuracies of each model's variants and of the ensembles (see predict.table).

    Returns ``{"models": [...], "ensembles": [...]}``; every accuracy also ``+ hash`` (with
    the product-hash post-processing) when `hash_classes` is given."""
    labels = np.asarray(preds[0].labels)
    if not preds[0].has_labels:
        raise ValueError(f"{preds[0].folder} has products without labels: accuracies need validation data")

    def scores(predicted):
        out = {"accuracy": accuracy(predicted, labels)}
        if hash_classes is not None:
            fixed, changed = apply_product_hash(predicted, hash_classes)
            out.update(hash_accuracy=accuracy(fixed, labels), hash_changed=int(changed.sum()))
        return out

    models = []
    for p in preds:
        variants = {v: scores(np.asarray(p.top(v)[:, 0])) for v in p.variants}
        models.append({"name": p.name, "image_accuracy": p.manifest.get("image_accuracy"),
                       "manifest": p.manifest, "variants": variants})
    ensembles = []
    variants = common_variants(preds)
    combiners = list(dict.fromkeys(split_variant(v)[0] for v in variants))
    combiner = combiner or ("mean" if "mean" in combiners else combiners[0])
    if len(preds) > 1:
        for variant in [v for v in variants if split_variant(v)[0] == combiner]:
            for method in methods:
                predicted = ensemble_classes(preds, variant, method, weights, progress=progress)
                ensembles.append({"method": method, "variant": variant, "models": len(preds), **scores(predicted)})
    return {"models": models, "ensembles": ensembles, "combiner": combiner, "products": len(labels)}


def missing_documents(preds):
    """The damaged regions of the input that no rows stand for (predict.sources.skipped_documents)."""
    return [d for d in preds[0].manifest.get("skipped_documents", ()) if not d["row"]]


def describe_missing(missing, shown=5):
    """``at least 2 products of test.bson (bytes 0..4410, 7510..7560)``: how many, and where.
    A region where no `_id` could be read lost at least one product."""
    n = sum(max(1, len(d["lost_product_ids"])) for d in missing)
    ranges = ", ".join(f"{d['offset']}..{d['end']}" for d in missing[:shown]) + (" ..." if len(missing) > shown else "")
    paths = ", ".join(sorted({d["path"] for d in missing}))
    return f"at least {n} product{'s' * (n > 1)} of {paths} (damaged bytes {ranges})"


def submission_compressed(path):
    """Whether the submission `path` is gzip-compressed: its suffix decides, ``.csv.gz`` or ``.csv``."""
    if path.endswith(".csv.gz"):
        return True
    if path.endswith(".csv"):
        return False
    raise ValueError(f"{path}: a submission is a .csv or a .csv.gz file (the suffix gives the format)")


@contextlib.contextmanager
def naming_errors(path, what):
    """Turn an OSError met while writing `path` (or its temporary or lock file) into one naming `path`."""
    try:
        yield
    except OSError as e:
        raise type(e)(f"{path}: cannot write {what}: {e.strerror or e}") from e


def write_submission(path, product_ids, classes, categories):
    """``_id,category_id`` for every product, written atomically: plain CSV for a ``.csv``
    path, gzip for ``.csv.gz`` (the gzip header names the final file, not the temporary one)."""
    compressed = submission_compressed(path)
    product_ids, classes = np.asarray(product_ids), np.asarray(classes)
    if len(product_ids) != len(classes):
        raise ValueError(f"{len(product_ids)} product ids but {len(classes)} predictions")
    ids, counts = np.unique(product_ids, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"product {int(ids[np.argmax(counts > 1)])} appears more than once")
    if len(classes) and (classes.min() < 0 or classes.max() >= len(categories)):
        raise ValueError(f"class ids outside 0..{len(categories) - 1} of {categories.path}")
    rows = np.stack([product_ids.astype(np.int64), categories.category_ids[classes]], axis=1)
    with naming_errors(path, "the submission"), atomic_path(path) as tmp, open(tmp, "wb") as raw:
        binary = gzip.GzipFile(os.path.basename(path), "wb", fileobj=raw) if compressed else raw
        with io.TextIOWrapper(binary, encoding="ascii") as f:
            f.write("_id,category_id\n")
            for start in range(0, len(rows), SUBMISSION_CHUNK):
                np.savetxt(f, rows[start:start + SUBMISSION_CHUNK], fmt="%d", delimiter=",")
    return path


def submission_classes(preds, variant, method, weights, hash_classes=None, progress=True):
    """The classes to submit: the ensemble's, then the product-hash overrides when given."""
    predicted = ensemble_classes(preds, variant, method, weights, progress=progress)
    if hash_classes is None:
        return predicted, 0
    fixed, changed = apply_product_hash(predicted, hash_classes)
    return fixed, int(changed.sum())


def variant_for(preds, combiner=None, md5_mode=None):
    """The variant named by combiner and MD5 mode (defaults: those of the first stored variant)."""
    first_combiner, first_mode = split_variant(preds[0].variants[0])
    variant = variant_name(combiner or first_combiner, md5_mode or first_mode)
    missing = [p.folder for p in preds if variant not in p.variants]
    if missing:
        raise ValueError(f"variant {variant} is not stored in {', '.join(missing)} (predict with --combiners / "
                         "--md5-mode including it)")
    return variant
