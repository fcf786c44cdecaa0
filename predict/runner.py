"""Model stage: batches of whole products through every model of a model worker.

A model worker runs the models of one backend (``models.backends``: MXNet and PyTorch
never share a process) on one device. `model_groups` splits a run's models by backend,
each group in the order of its first model; `open_runner` makes, in the model worker,
the `Runner` of the group's backend (its ``runner`` module's ``RUNNER``:
``predict.mxnet_runner``, ``predict.torch_runner``), which imports the framework there
and loads each model's weights (``predict.checkpoints.CheckpointModel.load``).

`Batcher` groups decoded products into batches of about `batch_size` network inputs
(images x views) without ever splitting a product: a product that does not fit starts
the next batch, one larger than `batch_size` goes alone. `Runner.predict_products` runs a
batch through every model and gives each product an ``(n_models, n_good_images,
classes)`` array: softmax probabilities, averaged over each image's views;
`Runner.predict_jpegs` does the same for products that carry JPEG bytes instead of
pixels (``--decode-on device``), on the backends that decode on their device.
"""
from dataclasses import dataclass

import numpy as np

from models.backends import backends_with, get_backend


@dataclass
class LoadedModel:
    name: str
    net: object
    preprocessing: object                      # its input (models.runs.Preprocessing)
    classes: int


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


def model_groups(handles):
    """``[(backend, [model numbers])]``: the models of `handles` grouped by the backend that
    runs them (``handle.backend``), the groups in the order of their first model."""
    groups = {}
    for number, handle in enumerate(handles):
        groups.setdefault(handle.backend, []).append(number)
    return list(groups.items())


def check_decode_on_device(handles):
    """Decoding on the device needs model workers of backends that can: a one-line
    `ValueError` naming the others, raised before any process starts."""
    unable = sorted({h.backend.framework for h in handles if not h.backend.decodes_on_device})
    if unable:
        able = [get_backend(name) for name in backends_with(lambda backend: backend.decodes_on_device)]
        raise ValueError(f"--decode-on device needs {' or '.join(b.framework for b in able)} model workers, and "
                         f"these models run on {', '.join(unable)}: add --backend {' or '.join(b.name for b in able)} "
                         "(or decode with --decode-on decoders)")


def open_runner(handles, device, processes=1):
    """The `Runner` of a model worker running `handles` (models of one backend) on device
    string `device`, `processes` processes computing on this machine's CPU at once (itself
    included: `Runner.share_cores`); imports the backend's framework, in the model worker only."""
    backends = {h.backend for h in handles}
    if len(backends) != 1:
        raise ValueError(f"a model worker runs the models of one backend, not {sorted(b.name for b in backends)}")
    runner = backends.pop().module("runner").RUNNER(handles, device)
    runner.share_cores(processes)
    return runner


class Runner:
    """What a model worker runs, whatever the framework: `models` (each a `LoadedModel`),
    loaded by `load_network` and run by `probabilities` of a subclass; whole products in,
    per-image view means out."""

    models = ()

    def load_models(self, handles):
        """Each handle's network on this runner's device (``handle.load(self)``)."""
        self.models = [LoadedModel(h.name, h.load(self), h.preprocessing, h.classes) for h in handles]

    def load_network(self, meta, compile=False):
        """The network of the checkpoint whose metadata is `meta`, on this runner's device."""
        raise NotImplementedError

    def share_cores(self, processes):
        """Size the framework's CPU thread pool for `processes` processes computing at once on
        this machine (the model workers on the CPU and the decoders), where the framework
        lets a process do so; by default its own (MXNet sizes its pools when it loads)."""

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
        device``, predict.decode.check_products): decoded on the device by the runners
        whose backend can (``models.backends``' ``decodes_on_device``)."""
        raise ValueError(f"{type(self).__name__} cannot decode pictures on its device (--decode-on device)")

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
