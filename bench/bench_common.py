"""What every benchmark shares, framework-free: the checkout on ``sys.path``, the machine's
name, the report writer and the choice of a backend's benchmark module.

Importing this module puts the checkout's root first on ``sys.path`` (a benchmark runs as
``python bench/NAME.py``, which puts only ``bench/`` there): the benchmarks run from a
checkout without an install step, as on the lent GPU machine (``bench/gpu_check.sh``).

A benchmark measured on several backends is a neutral command (``bench_train.py``,
``bench_predict.py``, ``bench_models.py``) that reads ``--backend`` (the registry
``models.backends``) and hands over to ``<command>_<backend>.py``, the only module that
imports that framework (MXNet and PyTorch never share a process).
"""
import argparse
import importlib
import os
import platform
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from data.atomic import atomic_open  # noqa: E402
from models.backends import DEFAULT_BACKEND, backend_names, get_backend  # noqa: E402

OUT = os.path.join(HERE, "out")              # scratch: synthetic inputs, temporary outputs (git-ignored)
RESULTS = os.path.join(HERE, "results")      # the reports' default folder
# Whole-machine training throughput of the reference on 8 Pascal GPUs (REFERENCE.md).
REFERENCE_MACHINE = {"dpn92": 535, "dpn98": 380, "dpn107": 246, "dpn131": 275, "resnext101_32x4d": 580,
                     "resnext101_64x4d": 340, "se_resnext101_64x4d": 274, "densenet161": 545}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def add_backend_option(parser, only=None):
    """``--backend``: the registry's backends, or `only` (the benchmark module of one backend)."""
    names = (only,) if only else backend_names()
    parser.add_argument("--backend", choices=names, default=only or DEFAULT_BACKEND,
                        help="the backend measured: " + ", ".join(names))


def requested_backend(argv):
    """The ``--backend`` of a benchmark's command line (the default backend when it gives
    none): read before anything imports a framework."""
    parser = argparse.ArgumentParser(add_help=False)
    add_backend_option(parser)
    return parser.parse_known_args(argv)[0].backend


def backend_module(command, backend):
    """The module ``<command>_<backend>`` (``bench_train_torch``...), imported: it loads that
    backend's framework. A framework that is not installed here ends the command with one line."""
    if not get_backend(backend).installed():
        installed = [name for name in backend_names() if get_backend(name).installed()]
        raise SystemExit("%s: error: --backend %s needs %s, which is not installed here%s"
                         % (command, backend, get_backend(backend).framework,
                            "; installed: --backend " + " or ".join(installed) if installed else ""))
    return importlib.import_module("%s_%s" % (command, backend))


def publish(lines, out):
    """Write the report `lines` to `out` (Markdown) and show them."""
    with atomic_open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print("written to %s" % out)
