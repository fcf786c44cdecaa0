"""Benchmark of the MXNet networks: forward and forward+backward images/s of every network at
180x180 (``python bench/bench_models.py``; ``bench_models_common`` says what is timed).

    python bench/bench_models.py                          # all networks on the CPU
    python bench/bench_models.py --devices gpu:0 --batch-size 64 --dtype float16
    python bench/bench_models.py --models dpn92 densenet161 --devices gpu:0,gpu:1

Each network is hybridized (static memory). This module imports MXNet: never PyTorch.
"""
import sys

import mxnet as mx
from mxnet import autograd, gluon

from bench_models_common import CLASSES, parse_args, run, time_batches
from data.cli import command
from models import get_spec
from models.mxnet_nets import count_parameters, get_model


def contexts_of(gpus):
    """GPU numbers ('' or '0,1', ``data.cli.gpu_numbers_of``) as a list of contexts."""
    ids = [int(i) for i in gpus.split(",") if i.strip()] if gpus else []
    return [mx.gpu(i) for i in ids] or [mx.cpu()]


def bench_model(name, contexts, batch_size, dtype, min_seconds, min_batches, warmup):
    """``(forward img/s, forward+backward img/s)`` of ``name`` over all ``contexts``."""
    net = get_model(name, classes=CLASSES, ctx=contexts)
    if dtype != "float32":
        net.cast(dtype)
    net.hybridize(static_alloc=True, static_shape=True)
    size = get_spec(name).input_size
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


@command("bench_models")
def main(argv=None):
    args = parse_args("mxnet", argv)
    contexts = contexts_of(args.gpus)
    run(args, lambda name: bench_model(name, contexts, args.batch_size, args.dtype, args.min_seconds,
                                       args.min_batches, args.warmup),
        count_parameters, "MXNet %s (MKL-DNN %s), hybridized" % (mx.__version__,
                                                                 mx.runtime.Features().is_enabled("MKLDNN")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
