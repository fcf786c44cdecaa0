"""The models a prediction runs: training runs' checkpoints, read once in the parent.

A `CheckpointModel` reads its checkpoint's metadata (``models.runs.read_meta``) once, when
the predictor's parent first asks (``predict.run.predict_input``, once the input is open),
without any framework: the preprocessing of its input
(``models.runs.preprocessing``), its classes, the backend that runs it (``models.backends``:
the run's own framework, or the one asked for with ``--backend``, which must be able to
load the run's weights) and the class histogram of its training data (the
``class_histogram`` of the training ``.rec``'s conversion report, found through the
checkpoint, or given as `class_prior`): the prior that a product without any decodable
picture gets (predict.aggregate). The model workers, forked from the parent, inherit the
handles and only load the weights (`load`, through their runner, predict.runner): the
trained weights, or with `ema` their moving average, which the run keeps beside them
(``--ema-decay``).
"""
import functools
import json
import os

from models import runs
from models.backends import get_backend
from models.families import ArchitectureError, family_of


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
    """A trained run (``runs/<run>`` or one ``epoch-NNNN.params``) to predict with.

    `class_prior`: the training side's conversion report (default: the checkpoint's);
    `backend`: the backend that runs it (None: the run's own; ``torch`` runs a Gluon run on
    PyTorch); `compile`: compile the network where the backend can (``torch.compile``);
    `ema`: predict with the moving average of the weights instead of the trained weights.
    What the checkpoint says is read on first use (`meta`), once: a missing or damaged
    checkpoint is then an error in the parent, before any process starts."""

    def __init__(self, path, epoch=None, name=None, class_prior=None, backend=None, compile=False, ema=False):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such run folder or checkpoint")
        if class_prior is not None and not os.path.isfile(class_prior):
            raise FileNotFoundError(f"{class_prior}: no such conversion report (class prior)")
        if backend is not None:
            get_backend(backend)
        self.path, self.epoch, self.compile, self._backend, self._class_prior = path, epoch, compile, backend, \
            class_prior
        self.ema = ema
        self.name = name or os.path.basename(os.path.normpath(path if os.path.isdir(path) else os.path.dirname(path)))

    @functools.cached_property
    def meta(self):
        """The checkpoint's metadata (``models.runs.read_meta``), read once; with `ema` its
        ``params`` are the moving average's."""
        meta = runs.read_meta(self.path, self.epoch)
        if not self.ema:
            return meta
        if "ema_params" not in meta:
            raise runs.CheckpointError(f"{meta['params']}: the run keeps no moving average of its weights (it was "
                                       "trained without --ema-decay): predict without --ema")
        return dict(meta, params=meta["ema_params"])

    @functools.cached_property
    def backend(self):
        """The backend that runs this model (``models.backends``): the one asked for, else the
        run's own; it must build the network and load its weights' format."""
        backend = get_backend(self._backend or self.meta["framework"])
        try:
            family_of(self.meta["model"]).check_backend(backend.name)
        except ArchitectureError as err:
            raise runs.CheckpointError(f"{self.meta['params']} holds a {self.meta['model']}: {err}") from None
        if not backend.loads(self.meta):
            raise runs.CheckpointError(f"{self.meta['params']} holds {runs.weights_format(self.meta)} weights, "
                                       f"which --backend {backend.name} cannot load "
                                       f"({', '.join(backend.weight_formats)})")
        return backend

    @property
    def framework(self):
        """The name of the backend that runs this model."""
        return self.backend.name

    @property
    def preprocessing(self):
        return runs.preprocessing(self.meta)

    @property
    def classes(self):
        return int(self.meta["classes"])

    @functools.cached_property
    def class_prior(self):
        """The conversion report whose class histogram is the fallback prior, or None."""
        report = self._class_prior or runs.training_report(self.meta)
        return os.path.abspath(report) if report else None

    @functools.cached_property
    def class_histogram(self):
        return class_histogram(self.class_prior, self.classes) if self.class_prior else None

    def describe(self):
        """What the collector and the manifest need of this model."""
        return {"name": self.name, "classes": self.classes, **self.preprocessing.as_meta(),
                "class_histogram": self.class_histogram, "checkpoint": os.path.abspath(self.path),
                "params": os.path.abspath(self.meta["params"]), "model": self.meta.get("model"),
                "epoch": self.meta.get("epoch"), "framework": self.framework,
                "weights_framework": self.meta["framework"], "weights_format": runs.weights_format(self.meta),
                "ema": self.ema, "class_prior": self.class_prior}

    def load(self, runner):
        """The network, ready to predict on the device of `runner` (a ``predict.runner.Runner``
        of this model's backend, in a model worker)."""
        return runner.load_network(self.meta, self.compile)
