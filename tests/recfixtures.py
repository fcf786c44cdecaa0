"""MXNet-side test helpers: `write_checkpoints` writes a run folder of real checkpoints (of
a one-layer network) for the tests of resuming.

The synthetic RecordIO datasets and pictures (no framework needed) are in helpers.py.
"""
import mxnet as mx

from train.mxnet_backend import checkpoint


def write_checkpoints(run_dir, epochs, model, classes, args):
    """Checkpoints of epochs 1..`epochs` in `run_dir` as training saves them, whose JSON names
    `model`, `classes` and the arguments `args` (a dict) and nothing else: a run folder of
    format 1 (``models.runs``), as runs written before the format had a number; the
    weights and the trainer state are those of a one-layer network after one Adam step."""
    net = mx.gluon.nn.Dense(3)
    net.initialize()
    trainer = mx.gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 0.1})
    with mx.autograd.record():
        loss = net(mx.nd.ones((2, 4))).sum()
    loss.backward()
    trainer.step(2)
    for epoch in range(1, epochs + 1):
        checkpoint.save_checkpoint(run_dir, epoch, net, trainer, {"model": model, "classes": classes, "args": args})
    return run_dir
