"""Per-epoch checkpoints of a run folder, and loading them for inference.

Layout of ``runs/<run>/`` (docs/DESIGN.md)::

    epoch-NNNN.params   Gluon ``save_parameters`` of the whole network
    epoch-NNNN.states   trainer (optimizer) state, for an exact resume
    epoch-NNNN.json     model, classes, epoch, args, metrics, mean, scale, dropout, ...
    metrics.jsonl       one line per completed epoch
    curves.png, train.log

``NNNN`` is the number of completed epochs (MXNet's convention: the log's ``Epoch[3]``
is saved as ``epoch-0004``). Each file is written under a temporary name and renamed, the
JSON last: an epoch counts as complete only once its JSON exists.
"""
import glob
import json
import os
import pickle
import re

import mxnet as mx

import models
from data.atomic import atomic_path, write_json
from train.data_iter import mxnet_message

_EPOCH_FILE = re.compile(r"epoch-(\d{4,})\.json$")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not fit the network."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file that cannot be loaded (truncated by a full disk or an interrupted copy)."""


def epoch_prefix(run_dir, epoch):
    return os.path.join(run_dir, "epoch-%04d" % epoch)


def complete_epochs(run_dir):
    """Sorted epochs of `run_dir` whose JSON (written last) and parameters exist."""
    epochs = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "epoch-*.json")):
        match = _EPOCH_FILE.search(os.path.basename(path))
        if match and os.path.exists(epoch_prefix(run_dir, int(match.group(1))) + ".params"):
            epochs.append(int(match.group(1)))
    return sorted(epochs)


def latest_epoch(run_dir):
    """The last complete epoch of `run_dir`, or None."""
    epochs = complete_epochs(run_dir) if os.path.isdir(run_dir) else []
    return epochs[-1] if epochs else None


def save_checkpoint(run_dir, epoch, net, trainer, meta):
    """Write epoch `epoch`'s parameters, trainer state and `meta` JSON; return the params path."""
    prefix = epoch_prefix(run_dir, epoch)
    mx.nd.waitall()   # no operation may still read the weights (see train.fit.restore_default_layout)
    with atomic_path(prefix + ".params") as tmp:
        net.save_parameters(tmp)
    with atomic_path(prefix + ".states") as tmp:
        trainer.save_states(tmp)
    write_json(prefix + ".json", dict(meta, epoch=epoch))
    return prefix + ".params"


def resolve_checkpoint(run_dir_or_params_path, epoch=None):
    """(run folder, epoch) of a run folder (its latest or the given epoch) or an ``epoch-NNNN.params`` path."""
    path = run_dir_or_params_path
    if os.path.isdir(path):
        run_dir = path
        if epoch is None:
            epoch = latest_epoch(run_dir)
            if epoch is None:
                raise CheckpointError("run folder %s holds no complete checkpoint (epoch-NNNN.json)" % run_dir)
    else:
        match = re.search(r"epoch-(\d{4,})\.(params|json|states)$", os.path.basename(path))
        if not match:
            raise CheckpointError("%s is neither a run folder nor an epoch-NNNN.params checkpoint" % path)
        run_dir, epoch = os.path.dirname(path) or ".", int(match.group(1))
    if not os.path.exists(epoch_prefix(run_dir, epoch) + ".json"):
        raise CheckpointError("epoch %d of %s is not complete (no %s)"
                              % (epoch, run_dir, epoch_prefix(run_dir, epoch) + ".json"))
    return run_dir, epoch


def load_meta(run_dir, epoch):
    path = epoch_prefix(run_dir, epoch) + ".json"
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as err:
        raise DamagedCheckpointError("%s cannot be read (%s): the checkpoint is damaged" % (path, err)) from None


def check_loadable(run_dir, epoch, states=True):
    """Raise `DamagedCheckpointError` naming the file when epoch `epoch`'s JSON, parameters or (with
    `states`) trainer state cannot be loaded: a file truncated by a full disk or an
    interrupted copy. Loads them whole (a few seconds for the largest networks)."""
    load_meta(run_dir, epoch)
    params = epoch_prefix(run_dir, epoch) + ".params"
    try:
        mx.nd.load(params)
    except mx.base.MXNetError as err:
        raise DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                     % (params, mxnet_message(err))) from None
    if states:
        path = epoch_prefix(run_dir, epoch) + ".states"
        try:
            with open(path, "rb") as f:
                pickle.loads(f.read())      # what Trainer.load_states reads: a pickle of the optimizer state
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, mx.base.MXNetError) as err:
            raise DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                         % (path, err)) from None


def load_for_inference(run_dir_or_params_path, epoch=None, ctx=mx.cpu()):
    """The trained network of a checkpoint, in float32, and its metadata: ``(net, meta)``.

    `run_dir_or_params_path`: a run folder (latest complete epoch unless `epoch` is
    given) or an ``epoch-NNNN.params`` file. `meta` is the epoch's JSON (``model``,
    ``classes``, ``mean``, ``scale``, ``image_shape``, ``metrics``, ...) plus ``params``,
    the path loaded. The network is not hybridized; float16 checkpoints are cast.
    """
    run_dir, epoch = resolve_checkpoint(run_dir_or_params_path, epoch)
    meta = load_meta(run_dir, epoch)
    params = epoch_prefix(run_dir, epoch) + ".params"
    net = models.get_model(meta["model"], classes=meta["classes"], dropout=meta.get("dropout", 0.0), ctx=ctx)
    try:
        net.load_parameters(params, ctx=ctx, cast_dtype=True, dtype_source="current")
    except mx.base.MXNetError:
        check_loadable(run_dir, epoch, states=False)     # names a truncated file
        raise
    return net, dict(meta, params=params)
