"""Combining probability vectors: the images of one product, and the models of an ensemble.

Per-product combiners (`combine_images`) turn a product's per-image probability vectors
(an ``(n_images, classes)`` array) into one vector. The reference summed its images'
probabilities (``mean``) and compared the alternatives below on an Xception model
(validation, no TTA: mean 0.708, product 0.712, RMS 0.707, median 0.707, power 0.1 0.712,
max 0.706, first image only 0.691):

- ``mean``       arithmetic mean (the reference's default);
- ``geometric``  geometric mean, i.e. the product of the probabilities up to a power
  (same ranking as the product); probabilities are floored at `EPS` first, so one image
  that rules a class out (an MD5 one-hot vector, say) vetoes it without zeroing the row;
- ``rms``        root mean square (power mean with exponent 2);
- ``power0.1``   power mean with exponent 0.1 (between geometric and arithmetic);
- ``median``     element-wise median;
- ``max``        element-wise maximum;
- ``first``      the first image only.

Every combiner returns a distribution (normalised to sum 1), so that the vectors of
different combiners and models stay on one scale and can be averaged later.

Product accuracy is defined once, beneath training and prediction (``data.products``): a
product is right when the arg-max of its vector is its label (``product_hits``), its
vector being, for the ``mean`` combiner, ``mean_vectors`` of its images' probability sums.

Ensembles (`combine_models`) average per-product vectors of several models, arithmetic or
geometric, with optional weights; the reference found the geometric mean better for fewer
than six models.
"""
import numpy as np

from data.products import mean_vectors, normalised
from predict.choices import parse_choices

COMBINERS = ("mean", "geometric", "rms", "median", "power0.1", "max", "first")
ENSEMBLE_METHODS = ("mean", "geometric")
EPS = 1e-7


def power_mean(probs, exponent, axis=0):
    """Power mean of `probs` along `axis` with the given exponent (0 = geometric mean)."""
    probs = np.asarray(probs, np.float64)
    if exponent == 0:
        return np.exp(np.log(np.maximum(probs, EPS)).mean(axis=axis))
    return np.power(np.power(probs, exponent).mean(axis=axis), 1.0 / exponent)


def combine_images(probs, combiner="mean"):
    """One product's vector from its images' vectors (`probs`: ``(n_images, classes)``)."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"expected a non-empty (n_images, classes) array, got shape {probs.shape}")
    if combiner == "mean":
        return mean_vectors(probs.sum(axis=0, dtype=np.float64)[None], [len(probs)])[0]
    if combiner == "geometric":
        out = power_mean(probs, 0)
    elif combiner == "rms":
        out = power_mean(probs, 2)
    elif combiner == "power0.1":
        out = power_mean(probs, 0.1)
    elif combiner == "median":
        out = np.median(probs, axis=0)
    elif combiner == "max":
        out = probs.max(axis=0)
    elif combiner == "first":
        out = probs[0]
    else:
        raise ValueError(f"unknown combiner {combiner!r}; choose from {', '.join(COMBINERS)}")
    return normalised(np.asarray(out, np.float64)).astype(np.float32)


def parse_combiners(text):
    """`"mean,geometric"` -> ``("mean", "geometric")``, validated, duplicates removed."""
    return parse_choices(text, COMBINERS, "combiner")


def combine_models(arrays, weights=None, method="mean"):
    """Weighted arithmetic or geometric mean of several models' ``(n, classes)`` arrays.

    Works on any row block, so callers stream large memory-mapped arrays through it chunk by
    chunk. Returns float32 rows normalised to sum 1."""
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; choose from {', '.join(ENSEMBLE_METHODS)}")
    if not arrays:
        raise ValueError("no model arrays to combine")
    weights = np.ones(len(arrays)) if weights is None else np.asarray(weights, np.float64)
    if len(weights) != len(arrays) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"need {len(arrays)} non-negative weights with a positive sum, got {list(weights)}")
    weights = weights / weights.sum()
    acc = None
    for w, a in zip(weights, arrays):
        a = np.asarray(a, np.float32)
        term = w * (np.log(np.maximum(a, EPS)) if method == "geometric" else a)
        acc = term if acc is None else acc + term
    if method == "geometric":
        acc = np.exp(acc - acc.max(axis=-1, keepdims=True))
    return normalised(acc).astype(np.float32)
