"""Benchmark of the MXNet training backend: the input pipeline against a plain
``ImageRecordIter``, and whole training steps (``python bench/bench_train.py``).

    python bench/bench_train.py                                   # this CPU: input + tiny nets + dpn92
    python bench/bench_train.py --devices gpu:0 --dtype float16 --networks dpn92 --batch-size 64
    python bench/bench_train.py --rec work/rec/A_train.rec        # a real training file

1. Input pipeline: the training iterator of ``train.mxnet_backend.record_iter`` as a run
   uses it (a fresh shuffled ``ImageRecordIter`` per epoch, random mirror, normalisation
   in C++) against a plain ``mx.io.ImageRecordIter`` over the same file with the same
   decode threads (the baseline), measured alternately in the same run; the best of
   ``--repeats`` rounds of each is reported, with their ratio (target >= 1.0).
2. Training steps: ``MXNetBackend.train_step`` (forward, backward, optimizer update,
   metrics: exactly what a run does per batch) over the devices given, once fed by the
   real iterator ("end to end") and once on one batch kept in device memory ("compute
   only"), at the input size of the model spec (180x180) unless ``--image-size`` says
   otherwise. With ``--devices gpu:0`` it runs unchanged on GPUs; ``--dtype float16``
   trains in float16 with float32 master weights, as ``--dtype float16`` of train/train.py.

Without ``--rec`` a synthetic Kaggle-format set (data.synth: 180x180 JPEGs of quality 75,
like the real ones) is written and converted by data.bson2rec into ``--work``.
Results go to bench/results/train_<device>.md. This module imports MXNet: never PyTorch.
"""
import argparse
import os
import sys
import time

import mxnet as mx

from bench_common import REFERENCE_MACHINE, RESULTS, cpu_name, publish
from bench_train_common import add_training_options, synthetic_rec, training_speeds
from data.record_file import open_record_file
from train.inputs import Augmentation
from train.mxnet_backend import record_iter


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
        return record_iter.image_iter(record, batch_size, image_shape, (0, 0, 0), 1.0, shuffle=True, seed=seed,
                                      augmentation=Augmentation(random_mirror=True), threads=threads)

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


def kept_on_device(batch, backend):
    """A copy of `batch` that no iterator overwrites (its arrays stay where they are)."""
    return mx.io.DataBatch([batch.data[0].copy()], [batch.label[0].copy()])


def build_parser():
    parser = argparse.ArgumentParser(prog="bench_train.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_training_options(parser, "mxnet", ["dpn_tiny", "resnext_tiny", "densenet_tiny", "dpn92"],
                         "cpu, or gpu:0,gpu:1,...")
    parser.add_argument("--threads", type=int, default=4, help="decode threads (MXNet caps them)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of the input measurement")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = "gpu" if any(d.startswith("gpu") for d in args.devices) else "cpu"
    rec = args.rec or synthetic_rec(args.work, args.products)
    record = open_record_file(rec)
    load_before = os.getloadavg()[0]
    image_shape = (3, args.image_size or 180, args.image_size or 180)
    ours, plain = input_speeds(record, args.batch_size, image_shape, args.threads, args.input_batches, args.repeats)
    rows = []
    for network in args.networks:
        compute_only, end_to_end = training_speeds(network, rec, args, ["--data-nthreads", str(args.threads)],
                                                   kept_on_device)
        rows.append((network, end_to_end, compute_only))
        print("%s: %.1f img/s end to end, %.1f img/s compute only" % (network, end_to_end, compute_only), flush=True)

    lines = ["# Training throughput (%s)" % ",".join(args.devices), "",
             "%s, %d cores; MXNet %s (MKL-DNN %s); %s; batch %d over %d device(s); %d records of %s; "
             "decode threads %d (MXNet caps them at max(cores/2-1, 1)). 1-minute load average before / after: "
             "%.1f / %.1f." % (cpu_name() if device == "cpu" else device.upper(), os.cpu_count(), mx.__version__,
                               mx.runtime.Features().is_enabled("MKLDNN"), args.dtype, args.batch_size,
                               len(args.devices), record.num_records, record.rec, args.threads, load_before,
                               os.getloadavg()[0]),
             "", "## Input pipeline alone (decode, mirror, normalise; best of %d alternating rounds of %d batches)"
             % (args.repeats, args.input_batches), "",
             "| pipeline | img/s |", "|---|---:|",
             "| plain `mx.io.ImageRecordIter` (baseline) | %.1f |" % plain,
             "| `train.mxnet_backend.record_iter.image_iter` (fresh shuffled iterator per epoch) | %.1f |" % ours,
             "", "Ratio (ours / baseline): **%.2f** (target >= 1.0)." % (ours / plain), "",
             "## Training steps (forward, backward, update, metrics)", "",
             "| network | end to end img/s | compute only img/s | img/s per device | reference, whole 8-GPU machine |",
             "|---|---:|---:|---:|---:|"]
    for network, end_to_end, compute_only in rows:
        lines.append("| %s | %.1f | %.1f | %.1f | %s |" % (network, end_to_end, compute_only,
                                                         end_to_end / len(args.devices),
                                                         REFERENCE_MACHINE.get(network, "")))
    publish(lines, args.out or os.path.join(RESULTS, "train_%s.md" % device))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
