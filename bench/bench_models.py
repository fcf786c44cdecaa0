"""Benchmark: forward and forward+backward images/s of every network at 180x180.

    python bench/bench_models.py                          # all networks on the CPU
    python bench/bench_models.py --devices gpu:0 --batch-size 64 --dtype float16
    python bench/bench_models.py --models dpn92 densenet161 --devices gpu:0,gpu:1

Each network is built with 5,270 classes, hybridized (static memory) and fed random
0-255 images; with several GPUs the batch is split across them (data parallel, as in
training: ``--batch-size`` is per device). Forward runs outside autograd (inference
mode); forward+backward records, computes the softmax cross-entropy and back-propagates
(no optimiser update). Each measurement runs whole batches until ``--min-seconds`` and at
least ``--min-batches`` have passed, after ``--warmup`` untimed batches. Results go to
bench/results/models_<device>.md (``--out`` to change).
"""
import argparse
import os
import platform
import time

import mxnet as mx
from mxnet import autograd, gluon

import models
from data.atomic import atomic_open
from data.cli import UserError, add_common_options, add_device_options, command, gpu_numbers_of

HERE = os.path.dirname(os.path.abspath(__file__))
CLASSES = 5270
# Training throughput of the reference on 8 Pascal GPUs (whole machine, img/s; REFERENCE.md).
REFERENCE_TRAINING = {"resnext101_32x4d": 580, "densenet161": 545, "dpn92": 535, "dpn98": 380,
                      "resnext101_64x4d": 340, "dpn131": 275, "se_resnext101_64x4d": 274, "dpn107": 246}


def contexts_of(gpus):
    """GPU numbers ('' or '0,1', ``data.cli.gpu_numbers_of``) as a list of contexts."""
    ids = [int(i) for i in gpus.split(",") if i.strip()] if gpus else []
    return [mx.gpu(i) for i in ids] or [mx.cpu()]


def time_batches(step, min_seconds, min_batches, warmup):
    """Seconds per batch of ``step()`` (which must block until its results exist)."""
    for _ in range(warmup):
        step()
    batches, start = 0, time.perf_counter()
    while batches < min_batches or time.perf_counter() - start < min_seconds:
        step()
        batches += 1
    return (time.perf_counter() - start) / batches


def bench_model(name, contexts, batch_size, dtype, min_seconds, min_batches, warmup):
    """``(forward img/s, forward+backward img/s)`` of ``name`` over all ``contexts``."""
    net = models.get_model(name, classes=CLASSES, ctx=contexts)
    if dtype != "float32":
        net.cast(dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    size = models.get_spec(name).input_size
    inputs = [mx.nd.random.uniform(0, 255, (batch_size, 3, size, size), ctx=c).astype(dtype) for c in contexts]
    labels = [mx.nd.random.randint(0, CLASSES, (batch_size,), ctx=c).astype("float32") for c in contexts]
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def forward():
        outputs = [net(x) for x in inputs]
        for out in outputs:
            out.wait_to_read()

    def forward_backward():
        with autograd.record():
            losses = [loss_fn(net(x), y) for x, y in zip(inputs, labels)]
        autograd.backward(losses)
        mx.nd.waitall()

    images = batch_size * len(contexts)
    forward_s = time_batches(forward, min_seconds, min_batches, warmup)
    train_s = time_batches(forward_backward, min_seconds, min_batches, warmup)
    return images / forward_s, images / train_s


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def report(rows, args, contexts, load_before):
    """Markdown report; the load averages show whether other processes shared the CPU."""
    device = ", ".join(str(c) for c in contexts)
    hardware = cpu_name() + ", %d cores" % os.cpu_count() if contexts[0].device_type == "cpu" else device
    lines = ["# Network throughput at 180x180 (%s)" % device, "",
             "%s; MXNet %s (MKL-DNN %s); %s; batch %d per device; %d classes; hybridized; "
             "timed for >= %g s and >= %d batches after %d warm-up batches."
             % (hardware, mx.__version__, mx.runtime.Features().is_enabled("MKLDNN"), args.dtype,
                args.batch_size, CLASSES, args.min_seconds, args.min_batches, args.warmup), "",
             "1-minute load average before / after the run: %.1f / %.1f." % (load_before, os.getloadavg()[0]), "",
             "| model | params at %d classes (M) | forward img/s | forward+backward img/s " % CLASSES +
             "| reference training img/s (8 Pascal GPUs) |",
             "|---|---:|---:|---:|---:|"]
    for name, params, forward, train in rows:
        lines.append("| %s | %.1f | %.1f | %.1f | %s |"
                     % (name, params / 1e6, forward, train, REFERENCE_TRAINING.get(name, "")))
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="networks to time (default: all registered)")
    parser.add_argument("--batch-size", type=int, default=None, help="per device (default: 8 on CPU, 64 on GPU)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--min-batches", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=None, help="markdown report (default: bench/results/models_<device>.md)")
    add_device_options(parser, help_text="cpu, or gpu:0,gpu:1,... (--gpus 0,1 also works)", gpus_alias=True)
    add_common_options(parser)
    args = parser.parse_args(argv)
    args.gpus = gpu_numbers_of(parser, args.devices)
    return args


@command("bench_models")
def main(argv=None):
    args = parse_args(argv)
    contexts = contexts_of(args.gpus)
    on_gpu = contexts[0].device_type == "gpu"
    args.batch_size = args.batch_size or (64 if on_gpu else 8)
    names = args.models or models.list_models()
    unknown = sorted(set(names) - set(models.list_models()))
    if unknown:
        raise UserError("unknown model(s): %s" % ", ".join(unknown))
    rows, load_before = [], os.getloadavg()[0]
    for name in names:
        forward, train = bench_model(name, contexts, args.batch_size, args.dtype, args.min_seconds,
                                     args.min_batches, args.warmup)
        rows.append((name, models.count_parameters(name, CLASSES), forward, train))
        print("%-22s forward %8.1f img/s   forward+backward %8.1f img/s" % (name, forward, train), flush=True)
    device = "gpu" + args.gpus.replace(",", "-") if on_gpu else "cpu"
    suffix = "_fp16" if args.dtype == "float16" else ""
    out = args.out or os.path.join(HERE, "results", "models_%s%s.md" % (device, suffix))
    with atomic_open(out) as f:
        f.write(report(rows, args, contexts, load_before))
    print("wrote", out)


if __name__ == "__main__":
    main()
