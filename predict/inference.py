"""Model stage: batches of whole products through every requested model.

A `ModelHandle` says how to get a network; `load` runs inside the model worker (after the
fork, on the worker's device), with the model's preprocessing (predict.preprocess) taken
from its checkpoint's metadata. `CheckpointModel` loads a training run's checkpoint with
`train.checkpoint.load_for_inference`, and with it the class histogram of its training
data (the `class_histogram` of the training `.rec`'s conversion report, found through the
checkpoint's `--data-train`, or given as `class_prior`): the prior that a product without
any decodable picture gets (predict.aggregate).

The framework: each model runs on its run's own (``framework`` of its metadata: `load`
builds the MXNet network, `load_torch` the PyTorch one, predict.torch_models), or on the
handle's `backend` (``torch`` converts a Gluon run on load). A model worker imports one
framework, MXNet or PyTorch (`open_runner`): they never share a process.

`Batcher` groups decoded products into batches of about `batch_size` network inputs
(images x views) without ever splitting a product: a product that does not fit starts
the next batch, one larger than `batch_size` goes alone. `predict_products` runs a batch
through every model and gives each product an ``(n_models, n_good_images, classes)``
array: softmax probabilities, averaged over each image's views. `predict_jpegs` does the
same for products that carry JPEG bytes instead of pixels (``--decode-on device``): only
the PyTorch runner decodes them (predict.torch_models.TorchRunner).
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from data.devices import parse_device
from predict.preprocess import network_input, of_checkpoint

# The frameworks a model worker can run; one per worker process (MXNet and PyTorch ship
# different OpenMP runtimes and must never share a process).
FRAMEWORKS = ("mxnet", "torch")


@dataclass
class LoadedModel:
    name: str
    net: object
    preprocessing: object                      # its input (train.run_folder.Preprocessing)
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
    `class_prior`: the training side's conversion report (default: the checkpoint's);
    `backend`: the framework that runs it (None: the run's own; ``torch`` converts a Gluon
    run on load, predict.torch_models); `compile`: ``torch.compile`` it (PyTorch only)."""

    def __init__(self, path, epoch=None, name=None, class_prior=None, backend=None, compile=False):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such run folder or checkpoint")
        if class_prior is not None and not os.path.isfile(class_prior):
            raise FileNotFoundError(f"{class_prior}: no such conversion report (class prior)")
        if backend not in (None, *FRAMEWORKS):
            raise ValueError(f"backend must be one of {FRAMEWORKS}, not {backend!r}")
        self.path, self.epoch, self.class_prior = path, epoch, class_prior
        self.backend, self.compile = backend, compile
        self.name = name or os.path.basename(os.path.normpath(path if os.path.isdir(path) else os.path.dirname(path)))

    def framework(self):
        """The framework that runs this model: `backend` when given, else the run's own
        (``framework`` of its metadata; read without any framework)."""
        from train.run_folder import read_meta
        return self.backend or read_meta(self.path, self.epoch)["framework"]

    def load(self, ctx):
        from train.checkpoint import load_for_inference
        net, meta = load_for_inference(self.path, epoch=self.epoch, ctx=ctx)   # names a truncated .params
        return self.loaded(net, meta, "mxnet")

    def load_torch(self, device):
        """The model on ``torch.device`` `device` (predict.torch_models)."""
        from predict.torch_models import load_checkpoint
        net, meta = load_checkpoint(self, device, self.compile)
        return self.loaded(net, meta, "torch")

    def loaded(self, net, meta, framework):
        """The `LoadedModel` of `net`, loaded by `framework` from the checkpoint whose
        metadata is `meta`."""
        report = self.class_prior or training_report(meta)
        histogram = class_histogram(report, int(meta["classes"])) if report else None
        info = {"checkpoint": os.path.abspath(self.path), "params": os.path.abspath(meta["params"]),
                "model": meta.get("model"), "epoch": meta.get("epoch"), "framework": framework,
                "weights_framework": meta["framework"], "class_prior": os.path.abspath(report) if report else None}
        return LoadedModel(self.name, net, of_checkpoint(meta), int(meta["classes"]), info, histogram)


def mxnet_context(text):
    """The MXNet context of device string ``text`` (``data.devices.parse_device``).
    MXNet is imported here and in ``ModelRunner``: by the model workers only."""
    import mxnet as mx
    device = parse_device(text)
    return mx.Context(device.kind, device.index)


class Batcher:
    """Collects decoded products into batches of whole products (see the module docstring)."""

    def __init__(self, batch_size, n_views=1):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.batch_size, self.n_views = batch_size, n_views
        self.items, self.inputs = [], 0

    def __len__(self):
        return len(self.items)

    def add(self, decoded):
        """Add one product; return the batches now complete (zero, one or two)."""
        ready = []
        n = decoded.inputs(self.n_views)
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


def worker_framework(handles):
    """The one framework of a model worker running `handles`; a `ValueError` naming the
    models when they need both (predict them with ``--backend torch``, which converts the
    Gluon runs, or in separate runs). A handle without ``framework()`` is an MXNet one."""
    frameworks = {h.name: h.framework() if hasattr(h, "framework") else "mxnet" for h in handles}
    if len(set(frameworks.values())) > 1:
        listed = ", ".join(f"{name} ({framework})" for name, framework in frameworks.items())
        raise ValueError(f"the models need both frameworks: {listed}; MXNet and PyTorch cannot share a model "
                         "worker: predict with --backend torch (converts the Gluon runs) or in separate runs")
    return next(iter(frameworks.values()))


def open_runner(handles, device):
    """The runner of a model worker on device string `device`: `ModelRunner` (MXNet) or
    `predict.torch_models.TorchRunner`, whichever `worker_framework` says; the framework
    is imported here, in the model worker only."""
    if worker_framework(handles) == "torch":
        from predict.torch_models import TorchRunner
        return TorchRunner(handles, device)
    return ModelRunner(handles, mxnet_context(device))


class Runner:
    """What a model worker runs, whatever the framework: `models` (each a `LoadedModel`)
    and `probabilities` of a subclass; whole products in, per-image view means out."""

    models = ()

    def describe(self):
        return [{"name": m.name, "classes": m.classes, **m.preprocessing.as_meta(),
                 "class_histogram": m.class_histogram, **m.info} for m in self.models]

    def probabilities(self, pixels):
        """(n_models, n_inputs, classes) float32 softmax of ``(n_inputs, H, W, 3)`` uint8 pixels."""
        raise NotImplementedError

    def predict_products(self, batch, n_views):
        """``[(decoded, probs)]`` for a batch; probs ``(n_models, n_good_images, classes)``."""
        sizes = [len(d.pixels) for d in batch]
        if sum(sizes) == 0:
            per_model = self.no_probabilities()
        else:
            per_model = self.probabilities(np.concatenate([d.pixels for d in batch if len(d.pixels)]))
        return self.per_product(batch, sizes, per_model, n_views)

    def predict_jpegs(self, batch, views, skip_bad=False):
        """`predict_products` of a batch of products that carry JPEG bytes (``--decode-on
        device``, predict.decode.check_products): decoded on the device by the runners that
        can (predict.torch_models.TorchRunner)."""
        raise ValueError(f"{type(self).__name__} cannot decode pictures on its device (--decode-on device): "
                         "that needs PyTorch model workers (--backend torch)")

    def no_probabilities(self):
        return [np.zeros((0, m.classes), np.float32) for m in self.models]

    @staticmethod
    def per_product(batch, sizes, per_model, n_views):
        """``[(decoded, probs)]``: the rows of `per_model` (``(inputs, classes)`` per model),
        `sizes` inputs per product, as each product's ``(n_models, n_good_images, classes)``
        view means."""
        out, start = [], 0
        for d, n in zip(batch, sizes):
            probs = np.stack([p[start:start + n].reshape(n // n_views, n_views, p.shape[1]).mean(axis=1)
                              for p in per_model])
            out.append((d, probs))
            start += n
        return out


class ModelRunner(Runner):
    """MXNet networks on one device, ready to predict uint8 RGB views.

    Each model's input is made by `predict.preprocess.network_input` with its own
    preprocessing (size and normalisation, from its checkpoint), once per distinct
    preprocessing of the batch. The NHWC uint8 -> NCHW float32 conversion and the
    normalisation run in numpy: MXNet's CPU transpose of uint8 arrays and its broadcast
    arithmetic are several times slower (26 ms and 16 ms for a 32-image batch, against 3 ms)."""

    def __init__(self, handles, ctx):
        self.ctx = ctx
        self.models = [h.load(ctx) for h in handles]
        for m in self.models:
            m.net.hybridize(static_alloc=True)

    def probabilities(self, pixels):
        import mxnet as mx
        inputs, out = {}, []
        for m in self.models:
            if m.preprocessing not in inputs:
                inputs[m.preprocessing] = network_input(m.preprocessing, pixels)
            out.append(mx.nd.softmax(m.net(mx.nd.array(inputs[m.preprocessing], ctx=self.ctx))).asnumpy())
        return out
