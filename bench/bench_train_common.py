"""What both training benchmarks share (``bench_train.py`` for MXNet, ``bench_train_torch.py``
for PyTorch), framework-free: the synthetic training file, the machine's name, the
reference's figures, and which backend a command line asks for."""
import argparse
import os
import platform

from data import bson2rec, synth
from data.atomic import atomic_open

HERE = os.path.dirname(os.path.abspath(__file__))
# Whole-machine training throughput of the reference on 8 Pascal GPUs (REFERENCE.md).
REFERENCE_MACHINE = {"dpn92": 535, "dpn98": 380, "dpn107": 246, "dpn131": 275, "resnext101_32x4d": 580,
                     "resnext101_64x4d": 340, "se_resnext101_64x4d": 274, "densenet161": 545}


def synthetic_rec(work_dir, products):
    """A training .rec of `products` synthetic products (built once, then reused)."""
    rec = os.path.join(work_dir, "bench_train.rec")
    if not os.path.exists(rec):
        synth.generate(work_dir, train_products=products, test_products=1, categories=50, seed=7, progress=False)
        bson2rec.convert(os.path.join(work_dir, "train.bson"), rec,
                         bson2rec.ConvertOptions(categories=os.path.join(work_dir, "category_names.csv")),
                         progress=False)
    return rec


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def requested_backend(argv):
    """The ``--backend`` of a benchmark's command line (``mxnet`` when it gives none): read
    before anything imports a framework, since MXNet and PyTorch must not share a process."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--backend", choices=("mxnet", "torch"), default="mxnet")
    return parser.parse_known_args(argv)[0].backend


def publish(lines, out):
    """Write the report `lines` to `out` (Markdown) and show them."""
    with atomic_open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written to %s" % out)
