"""The MXNet files of a checkpoint: saving a network and its trainer, checking them.

The run folder's layout and metadata are the contract of ``models.runs`` (which loads no
framework). This module writes and checks what only MXNet can: ``epoch-NNNN.params``
(Gluon ``save_parameters`` of the whole network) and ``epoch-NNNN.states`` (the trainer's
optimizer state).
"""
import pickle

import mxnet as mx

from data.atomic import atomic_path
from models import runs
from models.mxnet_nets.runs import check_weights


def save_checkpoint(run_dir, epoch, net, trainer, meta):
    """Write epoch `epoch`'s parameters, trainer state and `meta` JSON (last); return the params path."""
    mx.nd.waitall()   # no operation may still read the weights (see train.mxnet_backend.backend.restore_default_layout)
    with atomic_path(runs.params_path(run_dir, epoch)) as tmp:
        net.save_parameters(tmp)
    with atomic_path(runs.states_path(run_dir, epoch)) as tmp:
        trainer.save_states(tmp)
    runs.write_epoch_meta(run_dir, epoch, meta)
    return runs.params_path(run_dir, epoch)


def check_loadable(run_dir, epoch, states=True):
    """Raise ``models.runs.DamagedCheckpointError`` naming the file when epoch `epoch`'s JSON,
    parameters or (with `states`) trainer state cannot be loaded: a file truncated by a full
    disk or an interrupted copy. Loads them whole (a few seconds for the largest networks)."""
    runs.load_meta(run_dir, epoch)
    check_weights(runs.params_path(run_dir, epoch))
    if states:
        path = runs.states_path(run_dir, epoch)
        try:
            with open(path, "rb") as f:
                pickle.loads(f.read())      # what Trainer.load_states reads: a pickle of the optimizer state
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, mx.base.MXNetError) as err:
            raise runs.DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                              % (path, err)) from None
