"""Device strings of every tool (``--devices cpu`` / ``gpu:0,gpu:1``), without any framework.

One spelling for training, prediction and the benchmarks. The parent process checks the
strings while it reads its command line; only the process that imports a framework turns
a string into that framework's device (``predict.mxnet_runner.mxnet_context``, the training
backends). Training's older spelling ``--gpus 0,1`` is `gpu_devices` of its numbers.
"""
import os
from dataclasses import dataclass

DEVICE_KINDS = ("cpu", "gpu")


@dataclass(frozen=True)
class Device:
    """``kind`` (``cpu`` or ``gpu``) and ``index`` (0 when the string gives none)."""

    kind: str
    index: int


def parse_device(text):
    """``cpu``, ``cpu:0``, ``gpu`` or ``gpu:1`` -> a ``Device``; ``ValueError`` otherwise."""
    kind, _, number = text.strip().partition(":")
    if kind not in DEVICE_KINDS or (number and not number.isdigit()):
        raise ValueError(f"device must look like cpu, gpu or gpu:1, not {text!r}")
    return Device(kind, int(number or 0))


def device_list(text):
    """``"gpu:0, gpu:1"`` -> ``("gpu:0", "gpu:1")``, each checked by `parse_device`; none is a
    ``ValueError``. A device may be listed twice: the predictor then starts two model
    workers on it."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError("no device given: use cpu, or gpu:0,gpu:1,...")
    for name in names:
        parse_device(name)
    return names


def gpu_devices(numbers):
    """Training's old ``--gpus 0,1`` -> ``"gpu:0,gpu:1"``; empty -> ``"cpu"``."""
    gpus = [part.strip() for part in str(numbers).split(",") if part.strip()]
    if not all(part.isdigit() for part in gpus):
        raise ValueError(f"expected GPU numbers separated by commas, e.g. 0,1; got {numbers!r}")
    return ",".join(f"gpu:{part}" for part in gpus) or "cpu"


def gpu_numbers(names):
    """`device_list`'s names -> ``"0,1"``, the GPU numbers training's configuration stores
    (``DeviceConfig.gpus``, so that runs started before ``--devices`` still resume; ``""``:
    the CPU). CPU and GPU devices cannot be mixed, nor a GPU listed twice (training splits
    each batch over distinct devices)."""
    devices = [parse_device(name) for name in names]
    kinds = {device.kind for device in devices}
    if len(kinds) > 1:
        raise ValueError("cannot mix CPU and GPU devices: give cpu, or gpu:0,gpu:1,...")
    if kinds == {"gpu"} and len(set(devices)) != len(devices):
        raise ValueError(f"{','.join(names)} lists a GPU twice")
    return ",".join(str(device.index) for device in devices if device.kind == "gpu")


def cpu_share(processes):
    """The threads each of `processes` processes that compute at once on this machine may
    use without oversubscribing its cores: the cores this process may run on, shared out,
    at least 1. (PyTorch's default, every core in every process, cost the PyTorch input
    path on the CPU 4x its single-threaded time when input workers ran beside it.)"""
    return max(1, len(os.sched_getaffinity(0)) // max(1, processes))
