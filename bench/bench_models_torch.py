"""Benchmark of the PyTorch networks (timm's twins of the Gluon ones): forward and
forward+backward images/s of every network at 180x180 (``python bench/bench_models.py
--backend torch``; ``bench_models_common`` says what is timed).

    python bench/bench_models.py --backend torch --models dpn_tiny resnext_tiny
    python bench/bench_models.py --backend torch --devices gpu:0 --batch-size 256 --dtype bfloat16

One device (the first of ``--devices``); on a GPU channels_last, cuDNN autotuning and
``--dtype`` bfloat16/float16 as autocast, as the PyTorch training backend runs them.
This module imports PyTorch: never MXNet.
"""
import sys

import torch
import torch.nn.functional as F

from bench_models_common import CLASSES, parse_args, run, time_batches
from data.cli import command
from models import get_spec
from models.torch_nets import count_parameters, create_torch_model
from models.torch_nets.devices import torch_device

AUTOCAST = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def bench_model(name, device, batch_size, dtype, min_seconds, min_batches, warmup):
    """``(forward img/s, forward+backward img/s)`` of ``name`` on `device`."""
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    net = create_torch_model(name, CLASSES).to(device, memory_format=layout)
    size = get_spec(name).input_size
    inputs = torch.randint(0, 256, (batch_size, 3, size, size), device=device).float()
    inputs = inputs.contiguous(memory_format=layout)
    labels = torch.randint(0, CLASSES, (batch_size,), device=device)
    autocast = dict(device_type=device.type, dtype=AUTOCAST.get(dtype), enabled=dtype in AUTOCAST)

    def finished(tensor):
        return tensor.float().sum().item()      # waits for the device

    @torch.inference_mode()
    def forward():
        with torch.autocast(**autocast):
            finished(net.eval()(inputs))

    def forward_backward():
        with torch.autocast(**autocast):
            loss = F.cross_entropy(net.train()(inputs).float(), labels)
        loss.backward()
        finished(loss)

    forward_s = time_batches(forward, min_seconds, min_batches, warmup)
    train_s = time_batches(forward_backward, min_seconds, min_batches, warmup)
    return batch_size / forward_s, batch_size / train_s


@command("bench_models")
def main(argv=None):
    args = parse_args("torch", argv)
    device = torch_device(args.devices[0])
    torch.backends.cudnn.benchmark = True
    run(args, lambda name: bench_model(name, device, args.batch_size, args.dtype, args.min_seconds,
                                       args.min_batches, args.warmup),
        count_parameters, "PyTorch %s, %d threads" % (torch.__version__, torch.get_num_threads()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
