"""What the network benchmarks share (``bench_models.py`` dispatching to ``bench_models_mxnet.py``
or ``bench_models_torch.py``), framework-free: the command line, the timing loop and the report.

Each network is built with 5,270 classes and fed random 0-255 images at its input size
(180x180); with several devices the batch is split across them (data parallel, as in
training: ``--batch-size`` is per device). Forward runs in inference mode; forward+backward
computes the softmax cross-entropy and back-propagates (no optimiser update). Each
measurement runs whole batches until ``--min-seconds`` and at least ``--min-batches`` have
passed, after ``--warmup`` untimed batches. Results go to bench/results/models_<device>.md
(``--out`` to change).
"""
import argparse
import os
import time

from bench_common import REFERENCE_MACHINE, RESULTS, add_backend_option, cpu_name
from data.atomic import atomic_open
from data.cli import UserError, add_common_options, add_device_options, gpu_numbers_of
from models import list_models
from models.backends import get_backend

CLASSES = 5270


def parse_args(backend, argv=None):
    """The command line of the network benchmark of `backend`."""
    parser = argparse.ArgumentParser(prog="bench_models.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_backend_option(parser, only=backend)
    parser.add_argument("--models", nargs="+", default=None, help="networks to time (default: all registered)")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (default: 8 on CPU, 64 on GPU)")
    parser.add_argument("--dtype", choices=get_backend(backend).dtypes, default="float32")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--min-batches", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=None, help="markdown report (default: bench/results/models_<device>.md)")
    add_device_options(parser, help_text="cpu, or gpu:0,gpu:1,... (--gpus 0,1 also works)", gpus_alias=True)
    add_common_options(parser)
    args = parser.parse_args(argv)
    args.gpus = gpu_numbers_of(parser, args.devices)
    args.batch_size = args.batch_size or (64 if args.gpus else 8)
    args.models = args.models or list_models()
    unknown = sorted(set(args.models) - set(list_models()))
    if unknown:
        raise UserError("unknown model(s): %s" % ", ".join(unknown))
    return args


def time_batches(step, min_seconds, min_batches, warmup):
    """Seconds per batch of ``step()`` (which must block until its results exist)."""
    for _ in range(warmup):
        step()
    batches, start = 0, time.perf_counter()
    while batches < min_batches or time.perf_counter() - start < min_seconds:
        step()
        batches += 1
    return (time.perf_counter() - start) / batches


def run(args, bench_model, count_parameters, framework):
    """Time every network of ``args.models`` with ``bench_model(name) -> (forward img/s,
    forward+backward img/s)`` and write the report; `framework`: the framework's name and
    build, as the report shows it."""
    rows, load_before = [], os.getloadavg()[0]
    for name in args.models:
        forward, train = bench_model(name)
        rows.append((name, count_parameters(name, CLASSES), forward, train))
        print("%-22s forward %8.1f img/s   forward+backward %8.1f img/s" % (name, forward, train), flush=True)
    device = "gpu" + args.gpus.replace(",", "-") if args.gpus else "cpu"
    suffix = {"float32": "", "float16": "_fp16", "bfloat16": "_bf16"}[args.dtype]
    backend = "" if args.backend == "mxnet" else "_" + args.backend
    out = args.out or os.path.join(RESULTS, "models%s_%s%s.md" % (backend, device, suffix))
    hardware = "%s, %d cores" % (cpu_name(), os.cpu_count()) if not args.gpus else ",".join(args.devices)
    lines = ["# Network throughput at 180x180 (%s)" % ",".join(args.devices), "",
             "%s; %s; %s; batch %d per device; %d classes; timed for >= %g s and >= %d batches after %d warm-up "
             "batches." % (hardware, framework, args.dtype, args.batch_size, CLASSES, args.min_seconds,
                           args.min_batches, args.warmup), "",
             "1-minute load average before / after the run: %.1f / %.1f." % (load_before, os.getloadavg()[0]), "",
             "| model | params at %d classes (M) | forward img/s | forward+backward img/s " % CLASSES +
             "| reference training img/s (8 Pascal GPUs) |",
             "|---|---:|---:|---:|---:|"]
    lines += ["| %s | %.1f | %.1f | %.1f | %s |" % (name, params / 1e6, forward, train, REFERENCE_MACHINE.get(name, ""))
              for name, params, forward, train in rows]
    with atomic_open(out) as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", out)
