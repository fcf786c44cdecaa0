"""Model stage: batches of whole products through every requested model.

A `ModelHandle` says how to get a network; `load` runs inside the model worker (after the
fork, on the worker's device). `CheckpointModel` loads a training run's checkpoint with
`train.checkpoint.load_for_inference`, and with it the class histogram of its training
data (the `class_histogram` of the training `.rec`'s conversion report, found through the
checkpoint's `--data-train`, or given as `class_prior`): the prior that a product without
any decodable picture gets (predict.aggregate).

`Batcher` groups decoded products into batches of about `batch_size` network inputs
(images x views) without ever splitting a product: a product that does not fit starts
the next batch, one larger than `batch_size` goes alone. `predict_products` runs a batch
through every model and gives each product an ``(n_models, n_good_images, classes)``
array: softmax probabilities, averaged over each image's views.
"""
import json
import os
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np


@dataclass
class LoadedModel:
    name: str
    net: object
    mean: tuple
    scale: float
    classes: int
    info: dict = field(default_factory=dict)   # what produced it, for the manifest
    class_histogram: list = None               # training images per class, when known


def training_report(meta):
    """The conversion report of the training `.rec` a checkpoint's metadata names, or None
    when the run does not say or the report is not there (any more)."""
    from data.bson2rec import output_paths
    data_train = (meta.get("args") or {}).get("data_train")
    report = output_paths(data_train)[2] if data_train else None
    return report if report and os.path.isfile(report) else None


def class_histogram(report_path, classes):
    """The `class_histogram` of a training side's conversion report, checked against `classes`."""
    with open(report_path, encoding="utf-8") as f:
        histogram = json.load(f).get("class_histogram")
    if histogram is None or len(histogram) != classes:
        found = "no class histogram" if histogram is None else f"a histogram of {len(histogram)} classes"
        raise ValueError(f"{report_path}: {found}, the model predicts {classes} classes: "
                         "not the conversion report of its training side")
    return histogram


class CheckpointModel:
    """A trained run (``runs/<run>`` or one ``epoch-NNNN.params``), loaded in the worker;
    `class_prior`: the training side's conversion report (default: the checkpoint's)."""

    def __init__(self, path, epoch=None, name=None, class_prior=None):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such run folder or checkpoint")
        if class_prior is not None and not os.path.isfile(class_prior):
            raise FileNotFoundError(f"{class_prior}: no such conversion report (class prior)")
        self.path, self.epoch, self.class_prior = path, epoch, class_prior
        self.name = name or os.path.basename(os.path.normpath(path if os.path.isdir(path) else os.path.dirname(path)))

    def load(self, ctx):
        from train.checkpoint import load_for_inference
        net, meta = load_for_inference(self.path, epoch=self.epoch, ctx=ctx)   # names a truncated .params
        report = self.class_prior or training_report(meta)
        histogram = class_histogram(report, int(meta["classes"])) if report else None
        info = {"checkpoint": os.path.abspath(self.path), "params": os.path.abspath(meta["params"]),
                "model": meta.get("model"), "epoch": meta.get("epoch"),
                "class_prior": os.path.abspath(report) if report else None}
        return LoadedModel(self.name, net, tuple(meta["mean"]), float(meta["scale"]), int(meta["classes"]), info,
                           histogram)


def parse_device(text):
    """``cpu``, ``cpu:0``, ``gpu`` or ``gpu:1`` -> an MXNet context."""
    kind, _, number = text.strip().partition(":")
    if kind not in ("cpu", "gpu") or (number and not number.isdigit()):
        raise ValueError(f"device must look like cpu, gpu or gpu:1, not {text!r}")
    return mx.Context(kind, int(number or 0))


class Batcher:
    """Collects decoded products into batches of whole products (see the module docstring)."""

    def __init__(self, batch_size):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.batch_size = batch_size
        self.items, self.inputs = [], 0

    def __len__(self):
        return len(self.items)

    def add(self, decoded):
        """Add one product; return the batches now complete (zero, one or two)."""
        ready = []
        n = len(decoded.pixels)
        if self.items and self.inputs + n > self.batch_size:
            ready.append(self.take())
        self.items.append(decoded)
        self.inputs += n
        if self.inputs >= self.batch_size:
            ready.append(self.take())
        return ready

    def take(self):
        """The products collected so far, as one batch."""
        batch, self.items, self.inputs = self.items, [], 0
        return batch


class ModelRunner:
    """Networks on one device, ready to predict uint8 RGB views.

    The NHWC uint8 -> NCHW float32 conversion and the normalisation run in numpy: MXNet's
    CPU transpose of uint8 arrays and its broadcast arithmetic are several times slower
    (26 ms and 16 ms for a 32-image batch, against 3 ms), and the raw-pixel models of the
    reference (mean 0, scale 1) need no normalisation at all."""

    def __init__(self, handles, ctx):
        self.ctx = ctx
        self.models = [h.load(ctx) for h in handles]
        for m in self.models:
            m.net.hybridize(static_alloc=True)

    def describe(self):
        return [{"name": m.name, "classes": m.classes, "mean": list(m.mean), "scale": m.scale,
                 "class_histogram": m.class_histogram, **m.info} for m in self.models]

    def probabilities(self, pixels):
        """(n_models, n_inputs, classes) float32 softmax of ``(n_inputs, H, W, 3)`` uint8 pixels."""
        raw = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
        out = []
        for m in self.models:
            x = raw
            if any(m.mean) or m.scale != 1:
                x = (raw - np.asarray(m.mean, np.float32).reshape(1, 3, 1, 1)) * np.float32(m.scale)
            out.append(mx.nd.softmax(m.net(mx.nd.array(x, ctx=self.ctx))).asnumpy())
        return out

    def predict_products(self, batch, n_views):
        """``[(decoded, probs)]`` for a batch; probs ``(n_models, n_good_images, classes)``."""
        sizes = [len(d.pixels) for d in batch]
        if sum(sizes) == 0:
            per_model = [np.zeros((0, m.classes), np.float32) for m in self.models]
        else:
            per_model = self.probabilities(np.concatenate([d.pixels for d in batch if len(d.pixels)]))
        out, start = [], 0
        for d, n in zip(batch, sizes):
            probs = np.stack([p[start:start + n].reshape(n // n_views, n_views, p.shape[1]).mean(axis=1)
                              for p in per_model])
            out.append((d, probs))
            start += n
        return out
