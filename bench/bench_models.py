"""Benchmark: forward and forward+backward images/s of every network at 180x180.

    python bench/bench_models.py                       # MXNet (bench_models_mxnet.py)
    python bench/bench_models.py --backend torch       # PyTorch (bench_models_torch.py)

The command of every backend's network benchmark (``bench_models_common``: ``--help`` lists
the options): it reads ``--backend`` (the registry ``models.backends``) and hands the
command line to ``bench_models_<backend>.py`` in this process, before any framework is
imported. Results: bench/results/models_<device>.md (MXNet), models_torch_<device>.md.
"""
import sys

from bench_common import backend_module, requested_backend


def main(argv):
    return backend_module("bench_models", requested_backend(argv)).main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
