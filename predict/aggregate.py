"""Collector stage: per-image probabilities of a product -> its per-product rows, per model.

For each model and product: the image-level top-1 is scored (validation), each MD5 mode
is applied to the image vectors, each per-product combiner reduces them to one vector,
and every such variant is written to the model's prediction folder (predict.outputs).

A product without any decodable picture (every picture undecodable, with
skip-bad-images, or a test document that could not be read but whose `_id` could, with
skip-bad) still has its row: in every variant it gets the fallback vector, the model's
training class prior (its training side's class histogram, normalised; see
predict.checkpoints), whose top class is the training data's most frequent class, or the
uniform vector when the prior is unknown. They are counted and listed in the manifest
(``fallback``). The models may come in groups (one per backend, predict.runner.model_groups),
each group's results separately: every input product must arrive exactly once from every
group (a second arrival is an error at once, a missing one at `finish`), and what is said
of the product rather than of a model (its images, problems, fallback) is taken from the
first group's result.
"""
import logging
import time

import numpy as np

from data.products import product_hits
from predict.combine import combine_images
from predict.md5_modes import apply_md5_mode
from predict.outputs import PredictionWriter, variant_name

log = logging.getLogger(__name__)


class IncompleteOutputError(RuntimeError):
    """The collector did not get exactly one result for every input product."""


class Aggregator:
    """The collector's per-product work and bookkeeping, for every model of the run."""

    def __init__(self, out_dir_of, models, combiners=("mean",), md5_modes=("none",), top_k=5, manifest=None,
                 groups=None):
        """`models`: ``[{"name", "classes", ...}]`` (predict.checkpoints.CheckpointModel.describe);
        `out_dir_of(name)`: the prediction folder of a model; `groups`: the model numbers
        of each group, in the order of its results' probabilities (default: one group of all)."""
        self.models, self.combiners, self.md5_modes = models, tuple(combiners), tuple(md5_modes)
        self.groups = [list(group) for group in groups] if groups is not None else [list(range(len(models)))]
        self.variants = [variant_name(c, m) for m in self.md5_modes for c in self.combiners]
        self.manifest = dict(manifest or {})
        self.writers = [PredictionWriter(out_dir_of(m["name"]), m["classes"], self.variants, top_k) for m in models]
        self.seen = np.zeros((len(self.groups), 0), bool)
        self.ids = np.zeros(0, np.int64)
        self.image_correct = np.zeros(len(models), np.int64)
        self.images_scored = 0
        self.product_correct = np.zeros((len(models), len(self.variants)), np.int64)
        self.products_scored = 0
        self.images = 0
        self.problems = []
        self.fallback_rows = []
        self.fallbacks = [fallback_vector(m["classes"], m.get("class_histogram")) for m in models]
        self.started = time.time()

    def start_clock(self):
        """Time the run from now: the pipelines call it once their models are loaded, so that
        the manifests' ``elapsed_seconds`` and ``products_per_second`` leave loading out."""
        self.started = time.time()

    def _mark(self, seq, product_id, group):
        if seq >= self.seen.shape[1]:
            size = max(2 * self.seen.shape[1], seq + 1, 1024)
            self.seen = np.concatenate([self.seen, np.zeros((len(self.groups), size - self.seen.shape[1]), bool)],
                                       axis=1)
            self.ids = np.concatenate([self.ids, np.zeros(size - len(self.ids), np.int64)])
        if self.seen[group, seq]:
            raise IncompleteOutputError(f"product {product_id} (input position {seq}) arrived twice")
        self.seen[group, seq], self.ids[seq] = True, product_id

    def add(self, decoded, probs, group=0):
        """One product's results of the models of group `group`: `probs` ``(n_models of the
        group, n_good_images, classes)``. Returns whether the product now has every group's."""
        self._mark(decoded.seq, decoded.product_id, group)
        good_counts = [c for c, g in zip(decoded.counts, decoded.good) if g] if decoded.counts is not None \
            else [None] * probs.shape[1]
        labelled = decoded.label >= 0
        if group == 0:
            self.images += decoded.n_images
            self.problems += decoded.problems
            if labelled:
                self.products_scored += 1
                self.images_scored += probs.shape[1]
            if probs.shape[1] == 0:
                self.fallback_rows.append(decoded.seq)
        for image_probs, m in zip(probs, self.groups[group]):
            writer = self.writers[m]
            if labelled and len(image_probs):
                self.image_correct[m] += int((image_probs.argmax(axis=1) == decoded.label).sum())
            vectors = self._variants(image_probs, good_counts, self.fallbacks[m])
            if labelled:
                self.product_correct[m] += product_hits(np.stack([vectors[v] for v in self.variants]), decoded.label)
            writer.write(decoded.seq, decoded.product_id, decoded.label, decoded.n_images, decoded.product_hash,
                         vectors)
        return bool(self.seen[:, decoded.seq].all())

    def _variants(self, image_probs, counts, fallback):
        if len(image_probs) == 0:
            return {v: fallback for v in self.variants}
        vectors = {}
        for mode in self.md5_modes:
            adjusted = apply_md5_mode(image_probs, counts, mode)
            for combiner in self.combiners:
                vectors[variant_name(combiner, mode)] = combine_images(adjusted, combiner)
        return vectors

    def finish(self, n_products):
        """Check that products 0..n-1 all arrived, close every folder; return the manifests."""
        complete = self.seen.all(axis=0)
        arrived = int(complete[:n_products].sum())
        if arrived != n_products or self.seen[:, n_products:].any():
            missing = np.flatnonzero(~complete[:n_products])[:10].tolist()
            raise IncompleteOutputError(f"{arrived} of {n_products} products have a result; missing input "
                                        f"positions {missing}{' ...' if n_products - arrived > 10 else ''}")
        ids, counts = np.unique(self.ids[:n_products], return_counts=True)
        if np.any(counts > 1):
            first = np.argmax(counts > 1)
            raise IncompleteOutputError(f"product id {int(ids[first])} occurs {int(counts[first])} times in the input")
        elapsed = time.time() - self.started
        fallback_ids = self.ids[sorted(self.fallback_rows)].tolist()
        manifests = []
        for m, (model, writer) in enumerate(zip(self.models, self.writers)):
            fallback = {"products": len(fallback_ids), "product_ids": fallback_ids,
                        "class": int(np.argmax(self.fallbacks[m])), "class_prior": model.get("class_prior")}
            if fallback_ids:
                log.warning("%s: %d products without a decodable picture got the fallback: %s (class %d)",
                            model["name"], len(fallback_ids), f"the class prior of {fallback['class_prior']}"
                            if fallback["class_prior"] else "the uniform vector (no class prior)", fallback["class"])
            described = {k: v for k, v in model.items() if k != "class_histogram"}
            manifest = dict(self.manifest, name=model["name"], model=described, images=self.images,
                            elapsed_seconds=round(elapsed, 3),
                            products_per_second=round(n_products / elapsed, 2) if elapsed > 0 else None,
                            problems=self.problems, fallback=fallback)
            if self.products_scored:
                manifest["image_accuracy"] = self.image_correct[m] / max(self.images_scored, 1)
                manifest["product_accuracy"] = dict(zip(self.variants, (self.product_correct[m] /
                                                                        self.products_scored).tolist()))
            manifests.append(writer.close(n_products, _plain(manifest)))
        return manifests

    def discard(self):
        for writer in self.writers:
            writer.discard()


def _plain(obj):
    """JSON-ready copy: numpy scalars to Python numbers."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj.item() if isinstance(obj, np.generic) else obj


def fallback_vector(classes, histogram=None):
    """The vector of a product without any decodable picture: the training class prior
    (`histogram` normalised), else uniform."""
    if histogram is None or sum(histogram) <= 0:
        return np.full(classes, 1.0 / classes, np.float32)
    histogram = np.asarray(histogram, np.float64)
    return (histogram / histogram.sum()).astype(np.float32)
