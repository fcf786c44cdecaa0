"""The run-folder contract: what training writes per epoch and what resuming and prediction read.

Layout of ``runs/<run>/``::

    epoch-NNNN.params   the network's weights: Gluon's format (``weights_format`` gluon-params), or
    epoch-NNNN.safetensors  a PyTorch state dict (``weights_format`` safetensors: networks without a Gluon twin)
    epoch-NNNN.ema.params / .ema.safetensors  the exponential moving average of the weights (``--ema-decay``)
    epoch-NNNN.states   optimizer state, for an exact resume
    epoch-NNNN.json     the epoch's metadata (`epoch_meta`), written last
    metrics.jsonl       one line per completed epoch, rebuilt from the JSON files
    curves.png, train.log

``NNNN`` is the number of completed epochs (MXNet's convention: the log's ``Epoch[3]``
is saved as ``epoch-0004``). Each file is written under a temporary name and renamed, the
JSON last: an epoch counts as complete only once its JSON exists.

The JSON, format `FORMAT_VERSION`: ``format``, ``framework`` (the backend that wrote the
weights: ``mxnet``, ``torch``), ``weights_format`` (the weights file's format, `WEIGHT_FORMATS`:
what a backend must be able to load, ``models.backends``), ``ema_weights`` (the file of the
weights' moving average, when the run keeps one), ``model`` (registry name), ``classes``, ``epoch``, the preprocessing
the network was trained with (``image_shape`` 3,H,W, ``channel_order``, ``mean``,
``scale``, ``normalization``: `Preprocessing`), ``dropout``, ``dtype``, ``num_workers``,
``metrics`` and ``history`` (this epoch's record), ``args``, the training configuration
(``train.config.TrainConfig.flat``), and ``training_report``, the absolute path of the
training ``.rec``'s conversion report (`training_report`: a run trained with a relative
``--data-train`` finds it from any folder; absent in older runs). Format 1, the runs written before the
format had a number, has no ``format``, ``framework`` or ``channel_order`` and may lack
``image_shape``; `read_meta` reads both, and a JSON without ``weights_format`` (every run
written before the field) holds Gluon ``.params``. Importing this module loads no framework:
training (its driver and every backend), the predictor's parent and the reports read run
folders through it, beneath both training and prediction.
"""
import dataclasses
import glob
import json
import os
import re

from data.atomic import atomic_open, write_json
from data.images import KAGGLE_IMAGE_SHAPE
from data.recordio import record_paths

FORMAT_VERSION = 2
# The weights' file formats of a run: Gluon's ``.params`` in structural names, which both
# backends write for the networks with a Gluon twin (``models.params_file`` reads it without
# MXNet), and a PyTorch state dict as ``.safetensors``, which the PyTorch backend writes for
# the networks that exist on PyTorch only (timm's: ``models.families.timm_models``). A
# family says which its runs hold (``models.families.Family.weights_format``).
GLUON_PARAMS = "gluon-params"
SAFETENSORS = "safetensors"
WEIGHT_SUFFIXES = {GLUON_PARAMS: ".params", SAFETENSORS: ".safetensors"}
WEIGHT_FORMATS = tuple(WEIGHT_SUFFIXES)
_EPOCH_FILE = re.compile(r"epoch-(\d{4,})\.json$")
_CHECKPOINT_FILE = re.compile(r"epoch-(\d{4,})\.(params|safetensors|json|states)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or does not fit the network: the user's to
    mend (every tool tells it in one line)."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file that cannot be loaded (truncated by a full disk or an interrupted copy)."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a network's input is made from a decoded picture (``data.images.network_input``):
    resized to `image_shape` (3, H, W), channels in `channel_order`, then
    ``(pixel - mean) * scale``; `scale` is one number, or one per channel (timm's networks
    normalise each channel by its own standard deviation)."""

    image_shape: tuple
    channel_order: str
    mean: tuple
    scale: object             # a float, or a tuple of 3
    normalization: str

    def as_meta(self):
        scale = list(self.scale) if isinstance(self.scale, tuple) else self.scale
        return {"image_shape": list(self.image_shape), "channel_order": self.channel_order, "mean": list(self.mean),
                "scale": scale, "normalization": self.normalization}


CHANNEL_ORDERS = ("RGB", "BGR")


def _scale_of(value, where):
    """A JSON ``scale``: a number, or a list of one per channel (as a tuple)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise CheckpointError("scale %s of %s: expected a number or one per channel" % (list(value), where))
        return tuple(float(v) for v in value)
    return float(value)


def preprocessing(meta):
    """The `Preprocessing` of an epoch's metadata, of either format (format 1: RGB, as
    MXNet's ``ImageRecordIter`` feeds the networks; raw 0-255 when it does not say; the
    Kaggle picture size, 180 x 180, which every published recipe used, when it does not
    record its input shape). A shape or channel order it cannot mean is a `CheckpointError`
    naming the checkpoint."""
    shape = meta.get("image_shape")
    where = meta.get("params", "the checkpoint")
    if shape and (len(shape) != 3 or shape[0] != 3):
        raise CheckpointError("image_shape %s of %s: expected [3, height, width]" % (list(shape), where))
    found = Preprocessing(tuple(shape or KAGGLE_IMAGE_SHAPE), meta.get("channel_order", "RGB"),
                          tuple(meta.get("mean", (0.0, 0.0, 0.0))), _scale_of(meta.get("scale", 1.0), where),
                          meta.get("normalization", "raw"))
    if found.channel_order not in CHANNEL_ORDERS:
        raise CheckpointError("channel order %r of %s: expected one of %s" % (found.channel_order, where,
                                                                          CHANNEL_ORDERS))
    return found


def epoch_meta(framework, network, classes, preprocess, config, record, dropout, dtype, num_workers,
               config_overrides=None, weights_format=GLUON_PARAMS, ema=False):
    """The JSON of epoch ``record["epoch"]``: `record` is its line of ``metrics.jsonl``,
    `config` the run's ``train.config.TrainConfig``, `config_overrides` the architecture
    fields that differ from the registered network's (absent in older runs: none),
    `weights_format` the format of its weights file (one of `WEIGHT_FORMATS`), `ema`
    whether the run keeps the moving average of its weights (``ema_weights`` names its file)."""
    if weights_format not in WEIGHT_SUFFIXES:
        raise ValueError("unknown weights format %r, choose from %s" % (weights_format, ", ".join(WEIGHT_FORMATS)))
    epoch = record["epoch"]
    meta = dict(preprocess.as_meta(), format=FORMAT_VERSION, framework=framework, weights_format=weights_format,
                model=network, classes=classes, config_overrides=config_overrides or {},
                training_report=_report_of(config.data.data_train),
                epoch=epoch, args=config.flat(), metrics={"train": record["train"], "val": record["val"]},
                history=record, dropout=dropout, dtype=dtype, num_workers=num_workers)
    if ema:
        meta["ema_weights"] = os.path.basename(ema_path(".", epoch, weights_format))
    return meta


def epoch_prefix(run_dir, epoch):
    return os.path.join(run_dir, "epoch-%04d" % epoch)


def params_path(run_dir, epoch, weights_format=GLUON_PARAMS):
    """The weights file of epoch `epoch` in `weights_format` (a run's JSON says which:
    ``params_path(run_dir, epoch, weights_format(meta))``)."""
    return epoch_prefix(run_dir, epoch) + WEIGHT_SUFFIXES[weights_format]


def ema_path(run_dir, epoch, weights_format=GLUON_PARAMS):
    """The file of epoch `epoch`'s moving average of the weights, in `weights_format`."""
    return epoch_prefix(run_dir, epoch) + ".ema" + WEIGHT_SUFFIXES[weights_format]


def states_path(run_dir, epoch):
    return epoch_prefix(run_dir, epoch) + ".states"


def complete_epochs(run_dir):
    """Sorted epochs of `run_dir` whose JSON (written last) and weights (of any format) exist."""
    epochs = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "epoch-*.json")):
        match = _EPOCH_FILE.search(os.path.basename(path))
        if match and any(os.path.exists(params_path(run_dir, int(match.group(1)), weights_format))
                         for weights_format in WEIGHT_FORMATS):
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def latest_epoch(run_dir):
    """The last complete epoch of `run_dir`, or None."""
    epochs = complete_epochs(run_dir) if os.path.isdir(run_dir) else []
    return epochs[-1] if epochs else None


def resolve_checkpoint(run_dir_or_params_path, epoch=None):
    """(run folder, epoch) of a run folder (its latest or the given epoch) or the path of one
    of an epoch's files (``epoch-NNNN.params``, ``.safetensors``, ``.json``, ``.states``)."""
    path = run_dir_or_params_path
    if os.path.isdir(path):
        run_dir = path
        if epoch is None:
            epoch = latest_epoch(run_dir)
            if epoch is None:
                raise CheckpointError("run folder %s holds no complete checkpoint (epoch-NNNN.json)" % run_dir)
    else:
        match = _CHECKPOINT_FILE.search(os.path.basename(path))
        if not match:
            raise CheckpointError("%s is neither a run folder nor an epoch-NNNN.params checkpoint" % path)
        run_dir, epoch = os.path.dirname(path) or ".", int(match.group(1))
    if not os.path.exists(epoch_prefix(run_dir, epoch) + ".json"):
        raise CheckpointError("epoch %d of %s is not complete (no %s)"
                              % (epoch, run_dir, epoch_prefix(run_dir, epoch) + ".json"))
    return run_dir, epoch


def load_meta(run_dir, epoch):
    """Epoch `epoch`'s JSON as written (either format)."""
    path = epoch_prefix(run_dir, epoch) + ".json"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as err:
        raise DamagedCheckpointError("%s cannot be read (%s): the checkpoint is damaged" % (path, err)) from None


def read_meta(run_dir_or_params_path, epoch=None):
    """The metadata of a checkpoint for prediction: the JSON of a run folder's latest (or
    given) epoch or of an ``epoch-NNNN.params`` file, plus ``params`` (its weights' path),
    ``ema_params`` (the path of the weights' moving average, when the run keeps one) and,
    for format-1 runs, ``format`` 1, ``framework`` ``mxnet`` and ``channel_order``."""
    run_dir, epoch = resolve_checkpoint(run_dir_or_params_path, epoch)
    meta = load_meta(run_dir, epoch)
    meta = {"format": 1, "framework": "mxnet", "channel_order": preprocessing(meta).channel_order, **meta,
            "params": params_path(run_dir, epoch, weights_format(meta))}
    if meta.get("ema_weights"):
        meta["ema_params"] = os.path.join(run_dir, meta["ema_weights"])
    return meta


def weights_format(meta):
    """The format of the weights of the checkpoint whose metadata is `meta` (`GLUON_PARAMS`
    for the runs written before the JSON said); a `CheckpointError` for one no tool knows."""
    found = meta.get("weights_format", GLUON_PARAMS)
    if found not in WEIGHT_SUFFIXES:
        raise CheckpointError("%s holds weights of format %r, which no tool here knows (%s)"
                              % (meta.get("params", "the checkpoint"), found, ", ".join(WEIGHT_FORMATS)))
    return found


def write_epoch_meta(run_dir, epoch, meta):
    """Publish epoch `epoch`'s JSON: call it after its weights and optimizer state are written."""
    write_json(epoch_prefix(run_dir, epoch) + ".json", dict(meta, epoch=epoch))


def write_metrics_history(run_dir, epoch):
    """Rewrite ``metrics.jsonl`` from the checkpoint JSONs of epochs 1..`epoch`; return its records.

    The checkpoints are the record of truth: a run killed between its checkpoint and this
    file, or resumed from an earlier epoch, still gets one line per epoch, and never lines
    of epochs it is about to redo.
    """
    records = []
    for done in range(1, epoch + 1):
        if os.path.exists(epoch_prefix(run_dir, done) + ".json"):
            records.append(load_meta(run_dir, done)["history"])
    with atomic_open(os.path.join(run_dir, "metrics.jsonl"), "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    return records


def _report_of(data_train):
    """The absolute path of the conversion report of the training ``.rec`` `data_train`
    (whether or not it is there), or None when `data_train` is not a ``.rec`` path."""
    try:
        return os.path.abspath(record_paths(data_train)[2]) if data_train else None
    except ValueError:
        return None


def training_report(meta):
    """The conversion report (``.report.json``) of the training ``.rec`` of a checkpoint's
    metadata `meta`: its ``training_report`` (an absolute path), else the report of its
    ``args``' ``data_train`` (runs written before that field: a relative path is taken from
    the current folder); None when the run does not say or the report is not there (any more)."""
    data_train = (meta.get("args") or {}).get("data_train")
    for report in (meta.get("training_report"), _report_of(data_train)):
        if report and os.path.isfile(report):
            return report
    return None
