"""Benchmark of the prediction pipeline, on the backend of ``--backend``.

    python bench/bench_predict.py                      # MXNet: ZeroMQ against multiprocessing.Queue
    python bench/bench_predict.py --backend torch      # PyTorch: the whole pipeline against the model alone

The command of every backend's prediction benchmark (``bench_predict_common.build_parser``:
``--help`` lists every option): it reads the command line without any framework, then
hands it to ``bench_predict_<backend>.py`` (the registry ``models.backends`` names the
backends), in this process; each measurement then runs in a fresh process of that module.
Results: bench/results/predict.md (MXNet), predict_torch.md (PyTorch), with their JSON.
"""
import sys

from bench_common import backend_module
from bench_predict_common import build_parser
from models.backends import backends_with, compiler_problem, get_backend


def main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    if args.decode_on == "device" and not get_backend(args.backend).decodes_on_device:
        parser.error("--decode-on device needs --backend %s (model workers that decode on their device)"
                     % " or ".join(backends_with(lambda backend: backend.decodes_on_device)))
    if args.compile and (problem := compiler_problem()):
        parser.error(problem)
    return backend_module("bench_predict", args.backend).main(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
