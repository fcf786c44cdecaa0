"""The MXNet files of a checkpoint: saving a network and its trainer, checking and loading them.

The run folder's layout and metadata are the contract of ``train.run_folder`` (which
loads no framework); its names are importable from here too. This module writes and
reads what only MXNet can: ``epoch-NNNN.params`` (Gluon ``save_parameters`` of the whole
network) and ``epoch-NNNN.states`` (the trainer's optimizer state).
"""
import pickle

import mxnet as mx

import models
from data.atomic import atomic_path
from train import run_folder
from train.data_iter import mxnet_message
from train.run_folder import (CheckpointError, DamagedCheckpointError, complete_epochs,  # noqa: F401
                              epoch_prefix, latest_epoch, load_meta, resolve_checkpoint)


def save_checkpoint(run_dir, epoch, net, trainer, meta):
    """Write epoch `epoch`'s parameters, trainer state and `meta` JSON (last); return the params path."""
    mx.nd.waitall()   # no operation may still read the weights (see train.backend_mxnet.restore_default_layout)
    with atomic_path(run_folder.params_path(run_dir, epoch)) as tmp:
        net.save_parameters(tmp)
    with atomic_path(run_folder.states_path(run_dir, epoch)) as tmp:
        trainer.save_states(tmp)
    run_folder.write_epoch_meta(run_dir, epoch, meta)
    return run_folder.params_path(run_dir, epoch)


def check_loadable(run_dir, epoch, states=True):
    """Raise `DamagedCheckpointError` naming the file when epoch `epoch`'s JSON, parameters or (with
    `states`) trainer state cannot be loaded: a file truncated by a full disk or an
    interrupted copy. Loads them whole (a few seconds for the largest networks)."""
    load_meta(run_dir, epoch)
    params = run_folder.params_path(run_dir, epoch)
    try:
        mx.nd.load(params)
    except mx.base.MXNetError as err:
        raise DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                     % (params, mxnet_message(err))) from None
    if states:
        path = run_folder.states_path(run_dir, epoch)
        try:
            with open(path, "rb") as f:
                pickle.loads(f.read())      # what Trainer.load_states reads: a pickle of the optimizer state
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, mx.base.MXNetError) as err:
            raise DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                         % (path, err)) from None


def load_for_inference(run_dir_or_params_path, epoch=None, ctx=mx.cpu()):
    """The trained network of a checkpoint, in float32, and its metadata: ``(net, meta)``.

    `run_dir_or_params_path`: a run folder (latest complete epoch unless `epoch` is
    given) or an ``epoch-NNNN.params`` file. `meta` is ``train.run_folder.read_meta``'s
    (the epoch's JSON plus ``params``, the path loaded). The network is not hybridized;
    float16 checkpoints are cast.
    """
    meta = run_folder.read_meta(run_dir_or_params_path, epoch)
    if meta["framework"] not in ("mxnet", "torch"):     # PyTorch runs save Gluon-format .params too
        raise CheckpointError("%s holds %s weights; this is the MXNet backend" % (meta["params"], meta["framework"]))
    net = models.get_model(meta["model"], classes=meta["classes"], dropout=meta.get("dropout", 0.0), ctx=ctx,
                           config_overrides=meta.get("config_overrides"))
    try:
        net.load_parameters(meta["params"], ctx=ctx, cast_dtype=True, dtype_source="current")
    except mx.base.MXNetError:
        check_loadable(*run_folder.resolve_checkpoint(meta["params"]), states=False)     # names a truncated file
        raise
    return net, meta
