"""PyTorch devices of the device strings every tool takes (``data.devices``)."""
import torch

from data.devices import parse_device


def torch_device(text):
    """The ``torch.device`` of device string ``text``: ``cpu``, or ``gpu:N`` -> ``cuda:N``."""
    device = parse_device(text)
    return torch.device("cpu") if device.kind == "cpu" else torch.device("cuda", device.index)
