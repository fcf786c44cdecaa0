"""Benchmark of the PyTorch training backend: input pipeline alone, model alone, end to end.

    python bench/bench_train.py --backend torch                          # this CPU, tiny nets
    python bench/bench_train.py --backend torch --devices gpu:0 --dtype bfloat16 --networks dpn92 \\
        --batch-size 256 --workers 8 16 --decode-on workers device --rec work/rec/A_train.rec
                                                                        # a GPU (add --compile)

1. Input pipeline alone: ``train.torch_data.batches`` as a training run reads it (a
   fresh DataLoader per epoch over one global shuffle, random mirror, uint8 batches on
   the device), for each ``--decode-on`` place (OpenCV in the worker processes, or
   batched on the device: nvJPEG on a GPU) and ``--workers`` count: img/s over
   ``--input-batches`` batches, the workers' start included.
2. Model alone: ``TorchBackend.train_step`` (forward, backward, optimizer, metrics: what
   a run does per batch) on one batch kept on the device.
3. End to end, for each ``--decode-on`` place: the same steps fed by the training input
   of (1) with the largest ``--workers``; the ratio of (1) to it says how far ahead of
   the network the input runs (issue 13 asks 3x).

Steps are timed after ``--warmup`` steps (cuDNN autotuning, ``torch.compile``) over at least
``--min-seconds``, the device synchronised at both ends. It imports no MXNet and runs
unchanged on a GPU (``--devices gpu:0``). Results go to bench/results/train_torch_<device>.md.
"""
import argparse
import logging
import os
import time

import torch

from bench_train_common import HERE, REFERENCE_MACHINE, cpu_name, publish, synthetic_rec
from data.cli import add_device_options
from train import data_iter, fit, torch_data
from train.args import parse_config
from predict.torch_models import torch_device
from train.backend_torch import TorchBackend
from train.config import DECODE_PLACES, WORKER_DECODE


def input_speed(record, batch_size, image_shape, workers, batches, decode_on, device):
    """img/s of the first `batches` batches of a training epoch read by `workers` processes
    and decoded where `decode_on` says, onto `device`."""
    order = torch_data.epoch_order(record.num_records, 0, batch_size)
    start, images = time.perf_counter(), 0
    for i, (pixels, _) in enumerate(torch_data.batches(record, order, batch_size, image_shape,
                                                       data_iter.Augmentation(random_mirror=True), 0, workers,
                                                       decode_on, device)):
        pixels = pixels.to(device, non_blocking=True)
        images += len(pixels)
        if i + 1 == batches:
            break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return images / (time.perf_counter() - start)


def timed_steps(backend, batches, batch_size, warmup, min_seconds):
    """img/s of training steps on `batches` after `warmup` steps, over at least `min_seconds`."""
    steps, start = 0, None
    for batch in batches:
        backend.train_step(batch, 1e-4)
        steps += 1
        if steps == warmup:
            backend.finish_epoch()
            start, timed = time.perf_counter(), 0
        elif start is not None:
            timed += 1
            if time.perf_counter() - start >= min_seconds and timed >= 2:
                break
    backend.finish_epoch()
    return timed * batch_size / (time.perf_counter() - start)


def training_speeds(network, rec, args, workers, decode_on):
    """(model-alone img/s, end-to-end img/s) of `network`, its input decoded where `decode_on` says."""
    argv = ["--backend", "torch", "--data-train", rec, "--network", network, "--num-classes", "5270",
            "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--devices", ",".join(args.devices),
            "--data-nthreads", str(workers), "--model-dir", os.path.join(args.work, "runs", network),
            "--decode-on", decode_on,
            "--compile" if args.compile else "--no-compile"]
    if args.image_size:
        argv += ["--image-shape", "3,%d,%d" % (args.image_size, args.image_size)]
    config = parse_config(argv)
    quiet = logging.getLogger("bench_train_torch.quiet")
    quiet.disabled = True
    backend = TorchBackend(config)
    data = fit.prepare_data(config, False, 1, quiet)
    backend.seed(0)
    backend.build(fit.StartPoint(), data, quiet)
    backend.set_frozen(False)
    first = next(iter(backend.train_batches(data, 0)))
    on_device = (first[0].to(backend.device), first[1].to(backend.device))
    model_alone = timed_steps(backend, iter(lambda: on_device, None), args.batch_size, args.warmup,
                              args.min_seconds)

    def endless_epochs():
        for epoch in range(10 ** 6):
            yield from backend.train_batches(data, epoch)

    end_to_end = timed_steps(backend, endless_epochs(), args.batch_size, args.warmup, args.min_seconds)
    return model_alone, end_to_end


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backend", choices=("torch",), default="torch", help="this benchmark's backend")
    parser.add_argument("--rec", default=None, help="training .rec to read (default: a synthetic one in --work)")
    parser.add_argument("--work", default=os.path.join(HERE, "out", "train"), help="folder for the synthetic set")
    parser.add_argument("--products", type=int, default=3000, help="synthetic products (~1.7 images each)")
    parser.add_argument("--networks", nargs="+", default=["dpn_tiny", "resnext_tiny", "densenet_tiny"])
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="bfloat16/float16: autocast on the GPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's (180)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="input processes to measure")
    parser.add_argument("--decode-on", nargs="+", choices=DECODE_PLACES, default=[WORKER_DECODE],
                        help="where the JPEGs are decoded: the input workers (OpenCV) or the device (nvJPEG on a GPU)")
    parser.add_argument("--input-batches", type=int, default=60, help="batches per input-pipeline measurement")
    parser.add_argument("--warmup", type=int, default=3, help="training steps before the clock starts")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="per training measurement")
    parser.add_argument("--out", default=None)
    add_device_options(parser, help_text="cpu or gpu:N (one device)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    rec = args.rec or synthetic_rec(args.work, args.products)
    record = data_iter.open_record_file(rec)
    device = "gpu" if any(d.startswith("gpu") for d in args.devices) else "cpu"
    on = torch_device(args.devices[0])
    image_shape = (3, args.image_size or 180, args.image_size or 180)
    load_before = os.getloadavg()[0]
    inputs = {}
    for decode_on in args.decode_on:
        for workers in args.workers:
            inputs[decode_on, workers] = input_speed(record, args.batch_size, image_shape, workers,
                                                     args.input_batches, decode_on, on)
            print("input, decoded on %s, %d workers: %.1f img/s" % (decode_on, workers, inputs[decode_on, workers]),
                  flush=True)
    rows = []
    for network in args.networks:
        for decode_on in args.decode_on:
            alone, end = training_speeds(network, rec, args, max(args.workers), decode_on)
            rows.append((network, decode_on, alone, end, inputs[decode_on, max(args.workers)] / end))
            print("%s, decoded on %s: %.1f img/s model alone, %.1f img/s end to end, input %.1fx that" % rows[-1],
                  flush=True)
    name = torch.cuda.get_device_name() if device == "gpu" else cpu_name()
    lines = ["# PyTorch training throughput (%s)" % ",".join(args.devices), "",
             "%s, %d cores; PyTorch %s, cuDNN %s; %s%s; batch %d; %d records of %s; input %dx%d. 1-minute load "
             "average before / after: %.1f / %.1f." % (name, os.cpu_count(), torch.__version__,
                                                        torch.backends.cudnn.version(), args.dtype,
                                                        ", torch.compile" if args.compile else "", args.batch_size,
                                                        record.num_records, rec, *image_shape[1:], load_before,
                                                        os.getloadavg()[0]),
             "", "## Input pipeline alone (decode, mirror, batches of uint8 on the device; %d batches, workers' "
             "start included)" % args.input_batches, "", "| decoded on | input processes | img/s |", "|---|---:|---:|"]
    lines += ["| %s | %d | %.1f |" % (decode_on, workers, rate) for (decode_on, workers), rate in inputs.items()]
    lines += ["", "## Training steps (forward, backward, update, metrics; end to end with %d input processes)"
              % max(args.workers), "",
              "| network | decoded on | model alone img/s | end to end img/s | input alone / end to end "
              "| reference, whole 8-GPU machine |", "|---|---|---:|---:|---:|---:|"]
    lines += ["| %s | %s | %.1f | %.1f | %.1fx | %s |" % (*row, REFERENCE_MACHINE.get(row[0], "")) for row in rows]
    publish(lines, args.out or os.path.join(HERE, "results", "train_torch_%s.md" % device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
