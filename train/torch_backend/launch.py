"""Several GPUs of one machine with one command: ``train.py`` starts itself again under
``torchrun``, one process per GPU (DistributedDataParallel, ``train.torch_backend.backend``).

This module builds the command; it imports no framework, so the training command can ask
for it before anything is loaded. Only a command that will start torchrun imports PyTorch,
to check first that the machine has the GPUs (`check_devices`).
"""
import os
import sys

from data.cli import UserError


def relaunch(config, argv, script):
    """The command that trains `config` (given as `argv`) with `script` on its GPUs with one
    process each under ``torchrun``, when it lists several GPUs and this process was not
    started by torchrun; else None. ``--batch-size`` keeps its meaning, the batch over the
    machine's GPUs (as MXNet's): each process gets its share."""
    gpus = [g for g in (config.devices.gpus or "").split(",") if g.strip()]
    if len(gpus) < 2 or "LOCAL_RANK" in os.environ:
        return None
    if config.optimizer.batch_size % len(gpus):
        raise UserError("--batch-size %d does not split evenly over %d GPUs" % (config.optimizer.batch_size, len(gpus)))
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(len(gpus)),
            script, *argv, "--batch-size", str(config.optimizer.batch_size // len(gpus))]


def check_devices(config):
    """Before torchrun starts (`relaunch`): a `UserError` when the machine lacks a GPU of
    `config`, which each of torchrun's processes would report, and then torchrun its own
    traceback. Imports PyTorch (only the command that starts torchrun asks)."""
    from models.torch_nets.devices import unavailable_gpu
    unavailable = unavailable_gpu(config.devices.gpus)
    if unavailable:
        raise UserError(unavailable)
