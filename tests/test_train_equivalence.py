"""Equalities of the training step: devices, gradient accumulation, weight decay, freezing.

These tests drive ``train.step.TrainStep`` (the code every run uses) with batches read by
the real ``ImageRecordIter`` from a real ``.rec``. Their network has no BatchNorm: BN
computes statistics per device and per batch, so with BN two devices (or four
accumulated quarter batches) legitimately normalise differently from one device (one
large batch), and the equalities hold exactly only without batch statistics.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from helpers import write_synthetic_dataset
from models.mxnet_nets.weights import structural_names
from train import fit, logs
from train.mxnet_backend import backend as backend_mxnet
from train.args import parse_args
from train.config import TrainConfig
from data import record_file
from train.mxnet_backend import record_iter

NUM_CLASSES = 5


class SmallNet(nn.HybridBlock):
    """A BatchNorm-free CNN shaped like the registry's networks: ``features`` + ``output``."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.features = nn.HybridSequential()
            self.features.add(nn.Conv2D(8, 3, strides=2, activation="relu"),
                              nn.Conv2D(16, 3, strides=2, activation="relu"),
                              nn.GlobalAvgPool2D(), nn.Flatten())
            self.output = nn.Dense(NUM_CLASSES)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """Eight batches of 16 images (normalised to ~[-1, 1]) from a shuffled real iterator."""
    paths = write_synthetic_dataset(str(tmp_path_factory.mktemp("rec")), NUM_CLASSES, train_products=70,
                                    val_products=5, seed=11)
    record = record_file.open_record_file(paths["train"])
    it = record_iter.image_iter(record, 16, (3, 32, 32), (128, 128, 128), 1 / 128, shuffle=True, seed=5)
    return [(b.data[0].copy(), b.label[0].copy()) for _, b in zip(range(8), it)]


def make_args(**overrides):
    args = parse_args(["--data-train", "unused.rec", "--network", "test", "--num-classes", str(NUM_CLASSES),
                       "--lr", "0.01"])
    for name, value in overrides.items():
        setattr(args, name, value)
    return TrainConfig.from_args(args)


def make_step(contexts, kvstore="device", grad_accum=1, seed=0, **arg_overrides):
    """A network and the TrainStep ``fit.run`` builds around it."""
    args = make_args(grad_accum=grad_accum, **arg_overrides)
    mx.random.seed(seed)
    net = SmallNet()
    net.initialize(mx.init.Xavier(), ctx=contexts)
    net(mx.nd.zeros((1, 3, 32, 32), ctx=contexts[0]))   # resolve deferred shapes, as models.mxnet_nets.get_model does
    step = backend_mxnet.build_training(net, args, contexts, kvstore, fit.StartPoint(),
                                        logs.setup_logging(console=False))
    step.set_frozen(False)
    return step


def weights(net, ctx=None):
    """The parameters as numpy arrays, read once the engine is idle: MKL-DNN weights read
    while a backward pass still reads them can crash MXNet 1.9.1 (see ``backend_mxnet.restore_default_layout``)."""
    mx.nd.waitall()
    return {name: p.data(ctx).asnumpy() for name, p in structural_names(net).items()}


def assert_same_weights(a, b, rtol=2e-5, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


def test_two_devices_give_the_result_of_one(batches):
    """NAdam, lr 0.01: a 16-image batch on one CPU context, or 8 + 8 on two."""
    one = make_step([mx.cpu(0)])
    two = make_step([mx.cpu(0), mx.cpu(1)])
    start = weights(one.net)
    for data, label in batches:
        assert one(data, label) and two(data, label)
    after_one = weights(one.net)
    assert_same_weights(after_one, weights(two.net, mx.cpu(0)))
    assert_same_weights(weights(two.net, mx.cpu(0)), weights(two.net, mx.cpu(1)), rtol=0, atol=0)
    assert max(np.abs(after_one[k] - start[k]).max() for k in start) > 1e-3   # it did train


def test_gradient_accumulation_equals_a_larger_batch(batches):
    """Four accumulated batches of 4 images make the same step as one batch of 16."""
    big = make_step([mx.cpu(0)])
    accumulated = make_step([mx.cpu(0)], grad_accum=4)
    for data, label in batches:
        assert big(data, label)
        stepped = [accumulated(data[i:i + 4], label[i:i + 4]) for i in range(0, 16, 4)]
        assert stepped == [False, False, False, True]
    assert_same_weights(weights(big.net), weights(accumulated.net))


@pytest.mark.parametrize("optimizer", ["nadam", "adam", "sgd", "nag"])
@pytest.mark.parametrize("wd_sgd_only", [False, True])
def test_weight_decay_reaches_each_optimizer(batches, optimizer, wd_sgd_only):
    """A step whose loss gradient is zero moves weights only through weight decay: towards
    zero for weights, never for biases; with the reference's quirk not for Adam/NAdam."""
    step = make_step([mx.cpu(0)], optimizer=optimizer, wd=0.05, wd_sgd_only=wd_sgd_only, lr=0.01)
    step.loss = lambda logits, label: 0 * logits.sum(axis=1)
    before = weights(step.net)
    data, label = batches[0]
    step(data, label)
    after = weights(step.net)
    decayed = optimizer in ("sgd", "nag") or not wd_sgd_only
    for name in before:
        if name.endswith("weight") and decayed:
            moved = before[name] != 0
            # Adam-type steps have a fixed size and may overshoot zero, but always head for it
            np.testing.assert_array_equal(np.sign(before[name] - after[name])[moved], np.sign(before[name])[moved])
            assert np.abs(after[name]).sum() < np.abs(before[name]).sum(), name
        else:
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_freezing_trains_only_the_kept_parameters(batches):
    step = make_step([mx.cpu(0)])
    assert step.set_frozen(True)
    before = weights(step.net)
    step(*batches[0])
    frozen = weights(step.net)
    for name in before:
        changed = not np.array_equal(before[name], frozen[name])
        assert changed == name.startswith("output."), name       # only the classifier learned
    assert step.set_frozen(False) and not step.set_frozen(False)
    step(*batches[1])
    unfrozen = weights(step.net)
    assert all(not np.array_equal(frozen[name], unfrozen[name]) for name in frozen)
