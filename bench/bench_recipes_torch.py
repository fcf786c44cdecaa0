"""Benchmark: a recipe's training speed on this machine, and the hours the whole recipe takes at it.

    python bench/bench_recipes_torch.py                                  # T01, T02 and M06 on this CPU
    python bench/bench_recipes_torch.py --recipes T01 --devices gpu:0 --dtype bfloat16 --batch-size 256

Each recipe's network (``train.recipes``: the modern ones, and a reference model such as
M06's DPN-92 for comparison, as its PyTorch twin) is built as its run builds it (5,270
classes, its input size, its optimizer, random weights) and timed as bench/bench_models.py
times the reference's networks: whole training steps (forward, label-smoothed loss,
backward, the optimizer's update and the moving average of the weights) on one batch of
random pixels kept on the device, after ``--warmup`` untimed steps, for at least
``--min-seconds`` and ``--min-batches``. The estimate is the recipe's pictures (epochs x
the pictures of dataset A's training side, 11,754,490) over that speed: the hours of one
device of this kind for the network alone, without the input pipeline (bench_train.py
measures that) and without validation. Results go to bench/results/recipes_torch_<device>.md.
"""
import argparse
import os
import platform
import time

import torch
from timm.utils import ModelEmaV3

from bench_models_common import time_batches  # bench_common, beneath it, puts the checkout on sys.path
from data.atomic import atomic_open
from data.cli import add_common_options, add_device_options, command, gpu_numbers_of
from models import get_spec
from models.torch_nets.build import create_torch_model
from models.torch_nets.devices import torch_device
from train.args import parse_config
from train.recipes import MODELS, MODERN, Settings, phase_arguments, recipes_named
from train.torch_backend.backend import AUTOCAST_DTYPES, create_optimizer, smoothed_cross_entropy

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = 5270
DATASET_A_TRAIN_PICTURES = 11_754_490       # REFERENCE.md: split A's training side


def last_phase(name):
    """The training configuration of recipe `name`'s last phase (its epochs: the recipe's)."""
    [recipe] = recipes_named([name])
    return parse_config(phase_arguments(recipe, Settings(gpus=""))[-1])


def input_shape(config):
    """The input of the run of `config`: its ``--image-shape``, else its network's size."""
    size = get_spec(config.network.network).input_size
    return config.data.image_shape or (3, size, size)


def step_speed(config, device, batch_size, dtype, min_seconds, min_batches, warmup):
    """Training images/s of the network of `config` on `device` (see the module docstring)."""
    model = create_torch_model(config.network.network, CLASSES, dropout=config.network.dropout).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(model, config.optimizer)
    ema = ModelEmaV3(model, decay=config.ema.ema_decay) if config.ema.ema_decay else None
    x = torch.rand(batch_size, *input_shape(config), device=device)
    y = torch.randint(0, CLASSES, (batch_size,), device=device)
    autocast = AUTOCAST_DTYPES.get(dtype)

    def step():
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = model(x)
        loss = smoothed_cross_entropy(logits, y, config.optimizer.label_smoothing, CLASSES).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return batch_size / time_batches(step, min_seconds, min_batches, warmup)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "%s, %d threads" % (platform.processor() or platform.machine(), torch.get_num_threads())


@command("bench_recipes_torch")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench_recipes_torch", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=[*MODERN, "M06"], choices=[*MODERN, *MODELS])
    add_device_options(parser, help_text="cpu, or one GPU: gpu:0")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", choices=("float32", *AUTOCAST_DTYPES), default="float32")
    parser.add_argument("--min-seconds", type=float, default=20.0)
    parser.add_argument("--min-batches", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", default=None, help="results file (default bench/results/recipes_torch_<device>.md)")
    add_common_options(parser)
    args = parser.parse_args(argv)
    gpus = gpu_numbers_of(parser, args.devices)
    device = torch_device("gpu:%s" % gpus.split(",")[0] if gpus else "cpu")
    rows = ["| recipe | network | input | batch | dtype | train img/s | epochs x pictures | hours on this device |",
            "|---|---|---|---:|---|---:|---:|---:|"]
    for name in args.recipes:
        config = last_phase(name)
        epochs = config.schedule.num_epochs
        speed = step_speed(config, device, args.batch_size, args.dtype, args.min_seconds, args.min_batches,
                           args.warmup)
        pictures = epochs * DATASET_A_TRAIN_PICTURES
        rows.append("| %s | %s | %dx%d | %d | %s | %.2f | %d x %d | %.0f |" % (
            name, config.network.network, *input_shape(config)[1:], args.batch_size, args.dtype, speed, epochs,
            DATASET_A_TRAIN_PICTURES, pictures / speed / 3600))
        print(rows[-1], flush=True)
    text = "# Recipes beyond the reference: training speed and hours\n\nDevice: %s; %s\n\n%s\n" % (
        device_name(device), time.strftime("%Y-%m-%d"), "\n".join(rows))
    out = args.out or os.path.join(HERE, "results", "recipes_torch_%s.md" % ("gpu" if gpus else "cpu"))
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    main()
