"""PyTorch devices of the device strings every tool takes (``data.devices``), and the CPU
threads of a process."""
import os

import torch

from data.devices import cpu_share, parse_device


def torch_device(text):
    """The ``torch.device`` of device string ``text``: ``cpu``, or ``gpu:N`` -> ``cuda:N``."""
    device = parse_device(text)
    return torch.device("cpu") if device.kind == "cpu" else torch.device("cuda", device.index)


def unavailable_gpu(gpus):
    """Why the GPUs of `gpus`, the numbers ``"0,1"`` of ``--devices gpu:0,gpu:1``, cannot all
    be used here (this PyTorch sees no CUDA GPU, or fewer than one of them needs), or None."""
    listed = [int(g) for g in str(gpus).split(",") if g.strip()]
    if not torch.cuda.is_available():
        return "GPUs %s asked for but this PyTorch sees no CUDA GPU; train on the CPU with --devices cpu" % gpus
    missing = [g for g in listed if g >= torch.cuda.device_count()]
    if missing:
        return "GPUs %s: GPU %d asked for but this machine has %d" % (gpus, missing[0], torch.cuda.device_count())
    return None


def share_cpu_threads(processes):
    """Run this process's PyTorch operators on its share of the cores when `processes`
    processes compute at once on this machine (``data.devices.cpu_share``), unless
    ``OMP_NUM_THREADS`` sets their number (PyTorch then follows it). Returns the number."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_share(processes))
    return torch.get_num_threads()
