"""Devices and kvstores: GPUs (or several CPU contexts), single-machine and distributed.

On one machine the kvstore sums the gradients of the devices and runs the optimizer
once per parameter (``update_on_kvstore``, as the reference's Module did; ``nccl``
cannot, so there every device runs it on its own copy). Across machines the servers only
sum gradients (``update_on_kvstore=False``) and every worker runs the optimizer: each
worker holds the full optimizer state, so checkpoints and exact resume work as on one
machine (with the optimizer on the servers its state could not be saved).
"""
import os

import mxnet as mx

from train.config import DIST_KVSTORES, KVSTORES


class DeviceError(RuntimeError):
    """Devices or a kvstore that this machine or this launch cannot provide."""


def parse_gpus(text):
    """``"0,1,3"`` -> ``[0, 1, 3]``; empty or None -> ``[]``."""
    if not text:
        return []
    try:
        gpus = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise DeviceError("--gpus takes GPU numbers separated by commas, e.g. 0,1,2,3; got %r" % text) from None
    if len(set(gpus)) != len(gpus) or min(gpus) < 0:
        raise DeviceError("--gpus %r lists a GPU twice or a negative number" % text)
    return gpus


def all_gpus():
    """Every GPU this MXNet sees, as ``--gpus`` takes them: ``"0,1,2,3"``, or ``""`` (the CPU)."""
    if not mx.runtime.Features().is_enabled("CUDA"):
        return ""
    return ",".join(map(str, range(mx.context.num_gpus())))


def training_contexts(gpus="", cpu_devices=1):
    """The devices to train on: the GPUs listed, or `cpu_devices` CPU contexts.

    Several CPU contexts exercise the multi-device path (split, reduce, per-device
    update) on a machine without GPUs; they share the same cores.
    """
    gpu_ids = parse_gpus(gpus)
    if not gpu_ids:
        if cpu_devices < 1:
            raise DeviceError("--cpu-devices must be at least 1")
        return [mx.cpu(i) for i in range(cpu_devices)]
    if not mx.runtime.Features().is_enabled("CUDA"):
        raise DeviceError("--gpus %s given but this MXNet build has no CUDA support (install mxnet-cu112 "
                          "with requirements-gpu.txt and source shell/gpu_env.sh), or leave --gpus empty to "
                          "train on the CPU" % gpus)
    available = mx.context.num_gpus()
    missing = [g for g in gpu_ids if g >= available]
    if missing:
        raise DeviceError("--gpus %s asks for GPU %s but this machine has %d GPU(s)"
                          % (gpus, ",".join(map(str, missing)), available))
    return [mx.gpu(g) for g in gpu_ids]


def create_kvstore(kind, contexts):
    """The kvstore for `kind`: a created ``KVStore`` for distributed kinds, else the name.

    A distributed kvstore is created at once (it tells this worker's rank, needed to
    pick the data shard); a local one is created by the Trainer, and only when there is
    more than one device.
    """
    if kind not in KVSTORES:
        raise DeviceError("unknown --kv-store %r, choose from %s" % (kind, ", ".join(KVSTORES)))
    if kind == "nccl" and any(ctx.device_type != "gpu" for ctx in contexts):
        raise DeviceError("--kv-store nccl needs GPUs (--gpus)")
    if kind in DIST_KVSTORES:
        if os.environ.get("DMLC_ROLE") != "worker":
            raise DeviceError("--kv-store %s runs as a worker of a distributed job: start it with "
                              "python -m train.mxnet_backend.launch (or shell/launch_dist.sh), which starts the scheduler "
                              "and servers and sets DMLC_ROLE and the DMLC_PS_* variables" % kind)
        return mx.kv.create(kind)
    return kind


def is_distributed(kvstore):
    return isinstance(kvstore, mx.kv.KVStore) and kvstore.type in DIST_KVSTORES


def worker_position(kvstore):
    """(rank, number of workers) of this process."""
    if isinstance(kvstore, mx.kv.KVStore):
        return kvstore.rank, kvstore.num_workers
    return 0, 1
