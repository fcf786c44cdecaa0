"""The two MD5 tricks of the reference, as pure functions over category-count vectors.

(a) Image MD5 modes, applied to each image's probability vector before the per-product
combination, when the image's MD5 is in the training dictionary (image MD5 -> counts of
the categories it was labelled with). Reported validation accuracy of the 14-model
ensemble: none 0.75848, unique 0.76172, majority 0.75760, l1 0.76175, l2 0.76157,
softmax 0.75339.

- ``none``      vectors unchanged;
- ``unique``    an MD5 seen with exactly one category: one-hot on that category;
- ``majority``  any known MD5: one-hot on its most frequent category; among tied counts
  the category seen first with that MD5 in the training file, as the reference's
  ``Counter.most_common(1)[0]`` (see data.md5_dict);
- ``majority_model``  as ``majority``, but ties go to the tied category the model rates
  highest (not in the reference);
- ``l1``/``l2`` any known MD5: its category counts normalised by their sum / L2 norm;
- ``softmax``   any known MD5: the softmax of its full count vector, one entry per class
  with zeros for the categories it was never seen with, as the reference computed it. A
  count of 1 thus weighs only e / (e + classes - 1) (~0.05 % of 5270 classes): the
  vector is nearly uniform, its top the most frequent category, and in the product's
  combination such an image counts for little where the model's vector would have (the
  reference scored this mode below ``none``).

Images whose MD5 is unknown keep the model's vector in every mode.

(b) Product-hash post-processing, applied to the final predictions: when a product's hash
(its distinct image MD5s, sorted) equals the hash of training products that all carry one
single category, that category overwrites the prediction (`apply_product_hash`).

Counts are given per image as ``None`` (MD5 not in the dictionary) or a pair
``(class_ids, counts)`` of equal-length integer arrays (class ids, not category ids), in
the order the categories were first seen with the MD5 (predict.decode.Md5Counts).
"""
import numpy as np

from predict.choices import parse_choices

MD5_MODES = ("none", "unique", "majority", "majority_model", "l1", "l2", "softmax")


def image_vector(probs, counts, mode):
    """The vector that stands for one image (`probs`: its model vector) under `mode`."""
    if mode == "none" or counts is None:
        return probs
    classes, n = (np.asarray(a) for a in counts)
    if len(classes) == 0:
        return probs
    out = np.zeros_like(probs)
    if mode == "unique":
        if len(classes) != 1:
            return probs
        out[classes[0]] = 1
    elif mode == "majority":
        out[classes[np.argmax(n)]] = 1                # the first of the tied maxima
    elif mode == "majority_model":
        tied = classes[n == n.max()]
        out[tied[np.argmax(probs[tied])]] = 1
    elif mode == "l1":
        out[classes] = n / n.sum()
    elif mode == "l2":
        out[classes] = n / np.sqrt(np.square(n, dtype=np.float64).sum())
    elif mode == "softmax":
        full = np.zeros(len(probs), np.float64)
        full[classes] = n
        exp = np.exp(full - full.max())
        out[:] = exp / exp.sum()
    else:
        raise ValueError(f"unknown MD5 mode {mode!r}; choose from {', '.join(MD5_MODES)}")
    return out


def apply_md5_mode(probs, image_counts, mode):
    """Per-image vectors (`probs`: ``(n_images, classes)``) with `mode` applied; a new array
    when anything changed, `probs` itself otherwise."""
    if mode not in MD5_MODES:
        raise ValueError(f"unknown MD5 mode {mode!r}; choose from {', '.join(MD5_MODES)}")
    if len(image_counts) != len(probs):
        raise ValueError(f"{len(image_counts)} count entries for {len(probs)} images")
    if mode == "none" or all(c is None for c in image_counts):
        return probs
    return np.stack([image_vector(p, c, mode) for p, c in zip(probs, image_counts)])


def parse_md5_modes(text):
    """`"none,unique"` -> ``("none", "unique")``, validated, duplicates removed."""
    return parse_choices(text, MD5_MODES, "MD5 mode")


def single_class(counts):
    """The class of a count entry that holds exactly one class, else -1."""
    if counts is None:
        return -1
    classes = np.asarray(counts[0])
    return int(classes[0]) if len(classes) == 1 else -1


def apply_product_hash(predicted, hash_class):
    """Predictions with product-hash overrides: `hash_class` holds, per product, the single
    training category of its product hash or -1. Returns (new predictions, changed mask)."""
    predicted, hash_class = np.asarray(predicted), np.asarray(hash_class)
    if predicted.shape != hash_class.shape:
        raise ValueError(f"shape mismatch: {predicted.shape} predictions, {hash_class.shape} hash classes")
    override = hash_class >= 0
    out = np.where(override, hash_class, predicted)
    return out, out != predicted
