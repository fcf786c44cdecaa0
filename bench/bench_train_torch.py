"""Benchmark of the PyTorch training backend: input pipeline alone, model alone, end to end.

    python bench/bench_train.py --backend torch                          # this CPU, tiny nets
    python bench/bench_train.py --backend torch --devices gpu:0 --dtype bfloat16 --networks dpn92 \\
        --batch-size 256 --workers 8 16 --decode-on workers device --rec work/rec/A_train.rec
                                                                        # a GPU (add --compile)

0. Baseline: a bare ``cv2.imdecode`` loop over the same records' JPEGs, held in memory, one
   process: CPU time per image.
1. Input pipeline alone: ``train.torch_backend.loader.batches`` as a training run reads it (a
   fresh DataLoader per epoch over one global shuffle, random mirror, uint8 batches on
   the device), for each ``--decode-on`` place (OpenCV in the worker processes, or
   batched on the device: nvJPEG on a GPU) and ``--workers`` count: img/s and CPU time
   per image of all its processes (per image per core: comparable with (0) on a shared
   machine) over the first ``--input-batches`` batches, in the steady state (from the
   moment each worker has delivered a batch to the last batch).
2. Model alone: ``TorchBackend.train_step`` (forward, backward, optimizer, metrics: what
   a run does per batch) on one batch kept on the device.
3. End to end, for each ``--decode-on`` place: the same steps fed by the training input
   of (1) with the largest ``--workers``; the ratio of (1) to it says how far ahead of
   the network the input runs (issue 13 asks 3x).

Steps are timed after ``--warmup`` steps (cuDNN autotuning, ``torch.compile``) over at least
``--min-seconds``, the device synchronised at both ends. It imports no MXNet and runs
unchanged on a GPU (``--devices gpu:0``). Results go to bench/results/train_torch_<device>.md.
This module imports PyTorch: never MXNet.
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np
import psutil
import torch

from bench_common import REFERENCE_MACHINE, RESULTS, cpu_name, publish
from bench_train_common import add_training_options, synthetic_rec, training_speeds
from data import recordio
from data.record_file import open_record_file
from models.backends import WORKER_DECODE, compiler_problem, get_backend
from models.torch_nets.devices import share_cpu_threads, torch_device
from train.inputs import Augmentation, epoch_order
from train.torch_backend import loader


def cpu_seconds():
    """CPU time (user + system) of this process with its threads, and of its running children
    (the input workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def bare_decode(record, order):
    """(img/s, CPU µs per image) of a bare ``cv2.imdecode`` loop over the JPEGs of the records
    `order`, read into memory first: the least an input path that decodes with OpenCV costs."""
    with open(record.rec, "rb") as f:
        jpegs = [recordio.unpack(recordio.read_record(f, int(record.offsets[i]))[0])[1] for i in order]
    start, cpu = time.perf_counter(), time.process_time()
    for jpeg in jpegs:
        cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return len(jpegs) / (time.perf_counter() - start), (time.process_time() - cpu) / len(jpegs) * 1e6


def input_speed(record, order, batch_size, image_shape, workers, decode_on, device):
    """(img/s, CPU µs per image of all its processes) of reading the records `order` (whole
    batches of a training epoch) with `workers` processes, decoded where `decode_on` says,
    onto `device`, in the steady state: from the moment each worker has delivered a batch
    to the last batch (the workers' start and end, fixed costs of each epoch, left out)."""
    share_cpu_threads(1 + workers)        # as TorchBackend: the main process and its input workers share the cores
    last = len(order) // batch_size - 1
    first = min(max(workers, 1), last) - 1
    for k, (pixels, _) in enumerate(loader.batches(record, order, batch_size, image_shape,
                                                   Augmentation(random_mirror=True), 0, workers, decode_on, device)):
        pixels = pixels.to(device, non_blocking=True)
        if k in (first, last) and device.type == "cuda":
            torch.cuda.synchronize(device)
        if k == first:
            start, cpu, images = time.perf_counter(), cpu_seconds(), 0
        elif k > first:
            images += len(pixels)
        if k == last:
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return images / seconds, cpu / images * 1e6


def kept_on_device(batch, backend):
    """`batch` copied to the training device once, to be trained on over and over."""
    return batch[0].to(backend.device), batch[1].to(backend.device)


def build_parser():
    parser = argparse.ArgumentParser(prog="bench_train.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_training_options(parser, "torch", ["dpn_tiny", "resnext_tiny", "densenet_tiny"], "cpu or gpu:N (one device)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="input processes to measure")
    parser.add_argument("--decode-on", nargs="+", choices=get_backend("torch").decode_places, default=[WORKER_DECODE],
                        help="where the JPEGs are decoded: the input workers (OpenCV) or the device (nvJPEG on a GPU)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compile and (problem := compiler_problem()):
        parser.error(problem)
    rec = args.rec or synthetic_rec(args.work, args.products)
    record = open_record_file(rec)
    device = "gpu" if any(d.startswith("gpu") for d in args.devices) else "cpu"
    on = torch_device(args.devices[0])
    image_shape = (3, args.image_size or 180, args.image_size or 180)
    load_before = os.getloadavg()[0]
    order = epoch_order(record.num_records, 0, args.batch_size)[:args.input_batches * args.batch_size]
    if len(order) < 2 * args.batch_size:
        parser.error("the input measurement needs 2 batches of --batch-size %d or more: %d records of %s give %d"
                     % (args.batch_size, record.num_records, rec, len(order) // args.batch_size))
    bare = bare_decode(record, order)
    print("bare cv2.imdecode loop: %.1f img/s, %.0f µs of CPU per image" % bare, flush=True)
    inputs = {}
    for decode_on in args.decode_on:
        for workers in args.workers:
            inputs[decode_on, workers] = input_speed(record, order, args.batch_size, image_shape, workers, decode_on,
                                                     on)
            print("input, decoded on %s, %d workers: %.1f img/s, %.0f µs of CPU per image"
                  % (decode_on, workers, *inputs[decode_on, workers]), flush=True)
    rows = []
    for network in args.networks:
        for decode_on in args.decode_on:
            options = ["--data-nthreads", str(max(args.workers)), "--decode-on", decode_on,
                       "--compile" if args.compile else "--no-compile"]
            alone, end = training_speeds(network, rec, args, options, kept_on_device)
            rows.append((network, decode_on, alone, end, inputs[decode_on, max(args.workers)][0] / end))
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
             "", "## Input pipeline alone (decode, mirror, batches of uint8 on the device; %d images)" % len(order), "",
             "Steady state: from the moment each input worker has delivered a batch to the last batch (the workers' "
             "start and end, fixed costs of each epoch, left out). CPU time per image: user + system of every process "
             "of the path (main process and its threads, input workers), i.e. per image per core; against the "
             "bare `cv2.imdecode` loop over the same JPEGs, in memory, measured in the same run (target: <= 1.5x "
             "for the uint8 path to the device's queue). PyTorch threads of the main process: the cores shared by "
             "it and its input workers (`models.torch_nets.devices.share_cpu_threads`).", "",
             "| path | input processes | img/s | CPU µs per image | CPU / bare decode loop |",
             "|---|---:|---:|---:|---:|",
             "| bare `cv2.imdecode` loop (baseline) | 0 | %.1f | %.0f | 1.00 |" % bare]
    lines += ["| decoded on %s | %d | %.1f | %.0f | **%.2f** |" % (decode_on, workers, rate, cpu, cpu / bare[1])
              for (decode_on, workers), (rate, cpu) in inputs.items()]
    if len(order) // args.batch_size < 10 * max(args.workers):
        lines += ["", "Only %d batches: too few for the steady state (the batches each worker prepared before the "
                  "clock started count, their CPU time does not); give more --input-batches or --products."
                  % (len(order) // args.batch_size)]
    lines += ["", "## Training steps (forward, backward, update, metrics; end to end with %d input processes)"
              % max(args.workers), "",
              "| network | decoded on | model alone img/s | end to end img/s | input alone / end to end "
              "| reference, whole 8-GPU machine |", "|---|---|---:|---:|---:|---:|"]
    lines += ["| %s | %s | %.1f | %.1f | %.1fx | %s |" % (*row, REFERENCE_MACHINE.get(row[0], "")) for row in rows]
    publish(lines, args.out or os.path.join(RESULTS, "train_torch_%s.md" % device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
