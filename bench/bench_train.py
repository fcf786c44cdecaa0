"""Benchmark: training images/s of the input pipeline alone and of whole training steps.

    python bench/bench_train.py                        # MXNet (bench_train_mxnet.py --help)
    python bench/bench_train.py --backend torch        # PyTorch (bench_train_torch.py --help)

The command of every backend's training benchmark: it reads ``--backend`` (the registry
``models.backends``) and hands the whole command line to ``bench_train_<backend>.py``, in
this process, before any framework is imported (MXNet and PyTorch never share a process).
"""
import sys

from bench_common import backend_module, requested_backend


def main(argv):
    return backend_module("bench_train", requested_backend(argv)).main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
