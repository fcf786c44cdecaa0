"""Benchmark: training images/s of the input pipeline alone and of whole training steps.

    python bench/bench_train.py                                   # this CPU: input + tiny nets + dpn92
    python bench/bench_train.py --devices gpu:0 --dtype float16 --networks dpn92 --batch-size 64
    python bench/bench_train.py --rec work/rec/A_train.rec        # a real training file

1. Input pipeline: the training iterator of ``train.data_iter`` as ``train/train.py`` uses
   it (a fresh shuffled ``ImageRecordIter`` per epoch, random mirror, normalisation in
   C++) against a plain ``mx.io.ImageRecordIter`` over the same file with the same decode
   threads (the baseline), measured alternately in the same run; the best of
   ``--repeats`` rounds of each is reported, with their ratio (target >= 1.0).
2. Training steps: ``train.step.TrainStep`` (forward, backward, optimizer update, metrics:
   exactly what a run does per batch) over the devices given, once fed by the real
   iterator ("end to end") and once on one batch kept in device memory ("compute only"),
   at the input size of the model spec (180x180) unless ``--image-size`` says otherwise.
   With ``--devices gpu:0`` it runs unchanged on GPUs; ``--dtype float16`` trains in float16 with
   float32 master weights, as ``--dtype float16`` of train/train.py.

Without ``--rec`` a synthetic Kaggle-format set (data.synth: 180x180 JPEGs of quality 75,
like the real ones) is written and converted by data.bson2rec into ``--work``.
Results go to bench/results/train_<device>.md. With ``--backend torch`` the PyTorch
backend is measured instead (``bench_train_torch.py``, in a process without MXNet).
"""
import argparse
import logging
import os
import sys
import time

from bench_train_common import HERE, REFERENCE_MACHINE, cpu_name, publish, requested_backend, synthetic_rec

if __name__ == "__main__" and requested_backend(sys.argv[1:]) == "torch":
    from bench_train_torch import main as torch_main   # PyTorch's benchmark: MXNet is never imported
    raise SystemExit(torch_main(sys.argv[1:]))

import mxnet as mx  # noqa: E402

import models  # noqa: E402
from data.cli import add_device_options, gpu_numbers_of  # noqa: E402
from train import backend_mxnet, data_iter, devices, fit  # noqa: E402
from train.args import parse_config as train_args  # noqa: E402


def drain(batches, limit):
    """Images read from the first `limit` batches, waiting for each batch's data."""
    images = 0
    for i, batch in enumerate(batches):
        if i == limit:
            break
        batch.data[0].wait_to_read()
        images += batch.data[0].shape[0]
    return images


def input_speeds(record, batch_size, image_shape, threads, batches, repeats):
    """Best img/s of (the training iterator, a plain ImageRecordIter), measured alternately."""
    def ours(seed):
        return data_iter.image_iter(record, batch_size, image_shape, (0, 0, 0), 1.0, shuffle=True, seed=seed,
                                    augmentation=data_iter.Augmentation(random_mirror=True), threads=threads)

    def plain(seed):
        return mx.io.ImageRecordIter(path_imgrec=record.rec, path_imgidx=record.idx, data_shape=image_shape,
                                     batch_size=batch_size, shuffle=True, seed=seed, rand_mirror=True,
                                     preprocess_threads=threads)

    best = {"ours": 0.0, "plain": 0.0}
    for seed in range(repeats):
        for name, make in (("plain", plain), ("ours", ours)):
            start = time.perf_counter()
            images = drain(make(seed), batches)   # the iterator is created inside the timed span
            best[name] = max(best[name], images / (time.perf_counter() - start))
    return best["ours"], best["plain"]


def training_speeds(network, record, contexts, batch_size, dtype, image_size, min_seconds, threads):
    """(end-to-end img/s, compute-only img/s) of training steps of `network`."""
    args = train_args(["--data-train", record.rec, "--network", network, "--num-classes", "5270",
                       "--batch-size", str(batch_size), "--dtype", dtype])
    quiet = logging.getLogger("bench_train.quiet")
    quiet.disabled = True
    net = backend_mxnet.prepare_network(args, contexts, fit.StartPoint(), quiet)
    step = backend_mxnet.build_training(net, args, contexts, "device", fit.StartPoint(), quiet)
    step.set_frozen(False)
    spec = models.get_spec(network)
    shape = (3, image_size or spec.input_size, image_size or spec.input_size)

    def timed(batch_source):
        batches, start = 0, None
        for batch in batch_source:
            step(batch.data[0], batch.label[0])
            batches += 1
            if batches == 2:          # after two warm-up steps (graph building, memory planning)
                mx.nd.waitall()
                start, timed_batches = time.perf_counter(), 0
            elif start is not None:
                timed_batches += 1
                if time.perf_counter() - start >= min_seconds and timed_batches >= 2:
                    break
        mx.nd.waitall()
        return timed_batches * batch_size / (time.perf_counter() - start)

    def endless_epochs():
        for seed in range(10 ** 6):
            yield from data_iter.image_iter(record, batch_size, shape, spec.mean, spec.scale, shuffle=True, seed=seed,
                                            augmentation=data_iter.Augmentation(random_mirror=True), threads=threads)

    end_to_end = timed(endless_epochs())
    first = next(endless_epochs())
    fixed = mx.io.DataBatch([first.data[0].copy()], [first.label[0].copy()])
    compute_only = timed(iter(lambda: fixed, None))
    return end_to_end, compute_only


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--backend", choices=("mxnet", "torch"), default="mxnet",
                        help="torch: the PyTorch backend's benchmark (bench_train_torch.py --help)")
    parser.add_argument("--rec", default=None, help="training .rec to read (default: a synthetic one in --work)")
    parser.add_argument("--work", default=os.path.join(HERE, "out", "train"), help="folder for the synthetic set")
    parser.add_argument("--products", type=int, default=3000, help="synthetic products (~1.7 images each)")
    parser.add_argument("--networks", nargs="+", default=["dpn_tiny", "resnext_tiny", "densenet_tiny", "dpn92"])
    parser.add_argument("--batch-size", type=int, default=32, help="images per step over all devices")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's (180)")
    parser.add_argument("--threads", type=int, default=4, help="decode threads (MXNet caps them)")
    parser.add_argument("--input-batches", type=int, default=60, help="batches per input-pipeline measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of the input measurement")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="per training measurement")
    parser.add_argument("--out", default=None)
    add_device_options(parser, help_text="cpu, or gpu:0,gpu:1,... (--gpus 0,1 also works)", gpus_alias=True)
    args = parser.parse_args(argv)
    args.gpus = gpu_numbers_of(parser, args.devices)

    contexts = devices.training_contexts(args.gpus)
    device = "gpu" if args.gpus else "cpu"
    record = data_iter.open_record_file(args.rec or synthetic_rec(args.work, args.products))
    load_before = os.getloadavg()[0]
    image_shape = (3, args.image_size or 180, args.image_size or 180)
    ours, plain = input_speeds(record, args.batch_size, image_shape, args.threads, args.input_batches, args.repeats)
    rows = []
    for network in args.networks:
        end_to_end, compute_only = training_speeds(network, record, contexts, args.batch_size, args.dtype,
                                                   args.image_size, args.min_seconds, args.threads)
        rows.append((network, end_to_end, compute_only))
        print("%s: %.1f img/s end to end, %.1f img/s compute only" % (network, end_to_end, compute_only), flush=True)

    lines = ["# Training throughput (%s)" % ", ".join(map(str, contexts)), "",
             "%s, %d cores; MXNet %s (MKL-DNN %s); %s; batch %d over %d device(s); %d records of %s; "
             "decode threads %d (MXNet caps them at max(cores/2-1, 1)). 1-minute load average before / after: "
             "%.1f / %.1f." % (cpu_name() if device == "cpu" else device.upper(), os.cpu_count(), mx.__version__,
                               mx.runtime.Features().is_enabled("MKLDNN"), args.dtype, args.batch_size,
                               len(contexts), record.num_records, record.rec, args.threads, load_before,
                               os.getloadavg()[0]),
             "", "## Input pipeline alone (decode, mirror, normalise; best of %d alternating rounds of %d batches)"
             % (args.repeats, args.input_batches), "",
             "| pipeline | img/s |", "|---|---:|",
             "| plain `mx.io.ImageRecordIter` (baseline) | %.1f |" % plain,
             "| `train.data_iter.image_iter` (fresh shuffled iterator per epoch) | %.1f |" % ours,
             "", "Ratio (ours / baseline): **%.2f** (target >= 1.0)." % (ours / plain), "",
             "## Training steps (forward, backward, update, metrics)", "",
             "| network | end to end img/s | compute only img/s | img/s per device | reference, whole 8-GPU machine |",
             "|---|---:|---:|---:|---:|"]
    for network, end_to_end, compute_only in rows:
        reference = REFERENCE_MACHINE.get(network)
        lines.append("| %s | %.1f | %.1f | %.1f | %s |" % (network, end_to_end, compute_only,
                                                         end_to_end / len(contexts), reference or ""))
    publish(lines, args.out or os.path.join(HERE, "results", "train_%s.md" % device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
