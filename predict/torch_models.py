"""The PyTorch model worker: runs and Gluon runs on PyTorch, in the predictor's model workers.

`TorchRunner` is what a model worker runs when its models' framework is ``torch``
(predict.inference.open_runner): PyTorch runs (``framework: torch``) and Gluon runs
converted on load (``--backend torch``). Both keep their weights in a Gluon ``.params``
file (train.backend_torch), read with numpy (models.params_file), its names mapped to
the twin's (models.weight_convert) and loaded into the timm twin of the network
(models.torch_nets), which computes the same function.

On a GPU (``gpu:N`` is ``cuda:N``) the networks run in bfloat16 autocast with
channels_last tensors, the layout and precision the Hopper tensor cores are fastest in (a
DPN-92 at 6,387 img/s on one H200 in bf16, against float32's fraction of that; figures in
the README); the softmax is taken in float32. On the CPU they run in float32, where they
give the MXNet worker's probabilities to ~1e-6 (tests/torch/test_torch_predict.py).
``compile``: each network goes through ``torch.compile`` (its first batches compile it).

The uint8 pixels travel to the device and become the network's input there
(`device_input`): a quarter of float32's bytes cross the bus, and the arithmetic of
predict.preprocess runs on the device, for the same float32 values.

This module imports PyTorch: only a model worker imports it (never the parent, never a
process that imported MXNet). A process that has run PyTorch's CPU operators must not fork
model workers: GNU OpenMP is not fork-safe, and such a child blocks forever in its first
parallel operator (seen in the tests, whose pytest process runs PyTorch:
tests/torch/torch_predict_side.py).
"""
import numpy as np
import torch

from data.devices import parse_device
from models.torch_nets import create_torch_model
from predict.inference import Runner
from predict.preprocess import resize_all
from train.backend_torch import gluon_weights_to_state
from train.run_folder import read_meta


def torch_device(text):
    """The ``torch.device`` of device string ``text``: ``cpu``, or ``gpu:N`` -> ``cuda:N``."""
    device = parse_device(text)
    return torch.device("cpu") if device.kind == "cpu" else torch.device("cuda", device.index)


def load_checkpoint(handle, device, compile=False):
    """``(net, meta)``: the network of checkpoint `handle` (a predict.inference.CheckpointModel)
    on `device`, in evaluation mode, and its metadata (``train.run_folder.read_meta``).
    The weights are a Gluon ``.params`` file whichever framework trained them: PyTorch runs
    save theirs in Gluon's format and names too (train.backend_torch)."""
    meta = read_meta(handle.path, handle.epoch)
    net = create_torch_model(meta["model"], int(meta["classes"]), dropout=meta.get("dropout", 0.0),
                             config_overrides=meta.get("config_overrides"))
    net.load_state_dict(gluon_weights_to_state(meta["params"], meta["model"]))
    return prepared(net, device, compile), meta


def prepared(net, device, compile=False):
    """`net` ready to predict on `device`: evaluation mode, there, channels_last on a GPU,
    through ``torch.compile`` when `compile`."""
    net = net.eval().to(device, memory_format=torch.channels_last if device.type == "cuda" else torch.preserve_format)
    return torch.compile(net) if compile else net


def device_input(preprocess, pixels, device):
    """`predict.preprocess.network_input` on `device`, as a tensor: ``(n, h, w, 3)``
    uint8 RGB `pixels` resized on the CPU when they are not the network's size, then
    copied as uint8 and, there, put in the channel order, NCHW (channels_last in memory
    on a GPU), float32, ``(x - mean) * scale``."""
    x = torch.from_numpy(np.ascontiguousarray(resize_all(pixels, preprocess.image_shape[1:]))).to(device)
    if preprocess.channel_order == "BGR":
        x = x.flip(-1)
    x = x.permute(0, 3, 1, 2).float()
    if any(preprocess.mean) or preprocess.scale != 1:
        mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        x = (x - mean) * torch.tensor(preprocess.scale, dtype=torch.float32, device=device)
    return x.contiguous(memory_format=torch.channels_last if device.type == "cuda" else torch.contiguous_format)


class TorchRunner(Runner):
    """PyTorch networks on one device (device string ``cpu`` or ``gpu:N``), ready to
    predict uint8 RGB views (see the module docstring)."""

    def __init__(self, handles, device):
        self.device = torch_device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True      # one input shape per model: tuned once
        self.models = [h.load_torch(self.device) for h in handles]

    @torch.inference_mode()
    def probabilities(self, pixels):
        inputs, out = {}, []
        for m in self.models:
            if m.preprocessing not in inputs:
                inputs[m.preprocessing] = device_input(m.preprocessing, pixels, self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = m.net(inputs[m.preprocessing])
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return out
