"""What the training benchmarks share (``bench_train.py`` dispatching to ``bench_train_mxnet.py``
or ``bench_train_torch.py``), framework-free: the synthetic training file, the options every
backend's benchmark takes and the timing of training steps, through the backend interface
of the training driver (``train.backend.Backend``, chosen by the registry ``models.backends``):
the framework is loaded by ``train.backend.create_backend`` in the benchmark module's process."""
import itertools
import logging
import os
import time

from bench_common import OUT, add_backend_option
from data import bson2rec, synth
from data.cli import add_device_options, positive_int
from models.backends import get_backend
from train import fit
from train.args import parse_config
from train.backend import create_backend


def synthetic_rec(work_dir, products):
    """A training .rec of `products` synthetic products (built once, then reused)."""
    rec = os.path.join(work_dir, "bench_train.rec")
    if not os.path.exists(rec):
        synth.generate(work_dir, train_products=products, test_products=1, categories=50, seed=7, progress=False)
        bson2rec.convert(os.path.join(work_dir, "train.bson"), rec,
                         bson2rec.ConvertOptions(categories=os.path.join(work_dir, "category_names.csv")),
                         progress=False)
    return rec


def add_training_options(parser, backend, networks, devices_help):
    """The options of every training benchmark, for the benchmark of `backend`; `networks`:
    the default ``--networks``, `devices_help` what ``--devices`` takes."""
    add_backend_option(parser, only=backend)
    parser.add_argument("--rec", default=None, help="training .rec to read (default: a synthetic one in --work)")
    parser.add_argument("--work", default=os.path.join(OUT, "train"), help="folder for the synthetic set")
    parser.add_argument("--products", type=positive_int, default=3000, help="synthetic products (~1.7 images each)")
    parser.add_argument("--networks", nargs="+", default=networks)
    parser.add_argument("--batch-size", type=positive_int, default=32, help="images per step over all devices")
    parser.add_argument("--dtype", choices=get_backend(backend).dtypes, default="float32",
                        help="training precision (16-bit ones on GPUs)")
    parser.add_argument("--image-size", type=positive_int, default=None, help="default: the model's (180)")
    parser.add_argument("--input-batches", type=positive_int, default=60,
                        help="batches per input-pipeline measurement")
    parser.add_argument("--min-seconds", type=float, default=10.0, help="per training measurement")
    parser.add_argument("--out", default=None, help="the Markdown report (default: bench/results/train_...md)")
    add_device_options(parser, help_text=devices_help)
    parser.add_argument("--warmup", type=positive_int, default=3, help="training steps before the clock starts")


def timed_steps(backend, batches, batch_size, warmup, min_seconds):
    """img/s of training steps of `backend` (a ``train.backend.Backend``) on `batches` after
    `warmup` steps, over at least `min_seconds` and 2 steps, the device finished at both ends."""
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


def training_speeds(network, rec, args, options, kept):
    """(model alone img/s, end to end img/s) of the training steps of `network` on the backend
    ``args.backend`` (``train.backend.create_backend``: what ``train/train.py`` runs per batch,
    forward, backward, optimizer, metrics), configured as ``train/train.py`` with the training
    `options` added. Model alone: one batch kept on the device (``kept(batch, backend)``)
    over and over; end to end: the training input of successive epochs."""
    argv = ["--backend", args.backend, "--data-train", rec, "--network", network, "--num-classes", "5270",
            "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--devices", ",".join(args.devices),
            "--model-dir", os.path.join(args.work, "runs", network), *options]
    if args.image_size:
        argv += ["--image-shape", "3,%d,%d" % (args.image_size, args.image_size)]
    config = parse_config(argv)
    quiet = logging.getLogger("bench_train.quiet")
    quiet.disabled = True
    backend = create_backend(args.backend, config)
    data = fit.prepare_data(config, False, 1, quiet)
    backend.seed(0)
    backend.build(fit.StartPoint(), data, quiet)
    backend.set_frozen(False)
    first = kept(next(iter(backend.train_batches(data, 0))), backend)
    model_alone = timed_steps(backend, itertools.repeat(first), args.batch_size, args.warmup, args.min_seconds)
    epochs = itertools.chain.from_iterable(backend.train_batches(data, epoch) for epoch in itertools.count())
    return model_alone, timed_steps(backend, epochs, args.batch_size, args.warmup, args.min_seconds)
