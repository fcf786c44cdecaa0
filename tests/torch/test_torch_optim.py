"""SGD and NAG of the PyTorch backend (``train.torch_backend.optim.MXNetMomentum``) against
MXNet 1.9.1, step by step: the same weights, gradients and learning rates (two x0.2 changes
in 30 steps) through the backend's ``create_optimizer`` here and through MXNet in a child
process (``gluon_side.py``: the MXNet backend's optimizer in a Gluon Trainer, and MXNet's
update operators); a resume through the state dict is exact, and the ``torch.optim.SGD``
state of older runs converts."""
import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

from train.args import parse_config
from train.torch_backend.backend import create_optimizer
from train.torch_backend.optim import MXNetMomentum, is_torch_sgd_state
from twin_helpers import run_gluon_side

SHAPES = {"conv_weight": (8, 3, 3, 3), "conv_bias": (8,), "dense_weight": (5, 16), "dense_bias": (5,)}
LEARNING_RATES = [0.1] * 10 + [0.02] * 10 + [0.004] * 10
TOLERANCE = 1e-5


def write_steps(path, wd=1e-3, seed=20):
    """Weights, 30 steps of gradients (a drift, so that the momentum matters) and learning
    rates; returns them."""
    rng = np.random.RandomState(seed)
    data = {"names": np.array(list(SHAPES)), "lrs": np.array(LEARNING_RATES), "wd": np.float64(wd),
            "momentum": np.float64(0.9)}
    for name, shape in SHAPES.items():
        data["w0_" + name] = rng.randn(*shape).astype(np.float32)
        data["g_" + name] = ((rng.randn(len(LEARNING_RATES), *shape) + 0.5) * 0.2).astype(np.float32)
    np.savez(path, **data)
    return data


def mxnet_weights(folder, path, optimizer, api):
    out = str(folder / ("%s-%s.npz" % (optimizer, api)))
    run_gluon_side([{"op": "momentum", "data": str(path), "optimizer": optimizer, "api": api, "out": out}], folder,
                   "%s-%s" % (optimizer, api))
    with np.load(out) as f:
        return {key[2:]: f[key] for key in f.files}


def parameters(data):
    return nn.ParameterDict({name: nn.Parameter(torch.from_numpy(data["w0_" + name].copy())) for name in SHAPES})


def backend_optimizer(model, optimizer, data):
    """The optimizer ``--optimizer`` `optimizer` gets from the PyTorch backend."""
    settings = parse_config(["--data-train", "x.rec", "--network", "dpn_tiny", "--backend", "torch", "--optimizer",
                             optimizer, "--lr", str(LEARNING_RATES[0]), "--mom", str(float(data["momentum"])),
                             "--wd", str(float(data["wd"]))]).optimizer
    return create_optimizer(model, settings)


def train(model, optimizer, data, steps):
    """Run `steps` (a range) of the data's steps; the weights after each."""
    history = {name: [] for name in SHAPES}
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = LEARNING_RATES[step]
        for name, param in model.items():
            param.grad = torch.from_numpy(data["g_" + name][step].copy())
        optimizer.step()
        for name, param in model.items():
            history[name].append(param.detach().numpy().copy())
    return {name: np.stack(values) for name, values in history.items()}


def differences(a, b):
    """max |a - b| over the parameters, per step."""
    return np.max([np.abs(a[name].astype(np.float64) - b[name]).reshape(len(a[name]), -1).max(1) for name in SHAPES],
                  axis=0)


@pytest.mark.parametrize("optimizer", ["sgd", "nag"])
def test_thirty_steps_with_two_rate_changes_follow_mxnet(tmp_path, optimizer):
    """Within 1e-5 of MXNet at every step. ``torch.optim.SGD`` (the backend's optimizer
    before) is off by more than 1e-3 after the first change of rate; its SGD agrees before
    it, its NAG not even then (it decays the weight before the step, MXNet the one after)."""
    data = write_steps(tmp_path / "steps.npz")
    model = parameters(data)
    ours = backend_optimizer(model, optimizer, data)
    assert isinstance(ours, MXNetMomentum)
    weights = train(model, ours, data, range(len(LEARNING_RATES)))
    for api in ("trainer", "operator"):
        mxnet = mxnet_weights(tmp_path, tmp_path / "steps.npz", optimizer, api)
        assert differences(weights, mxnet).max() <= TOLERANCE, (api, differences(weights, mxnet))
    assert np.abs(weights["conv_weight"][-1] - data["w0_conv_weight"]).max() > 0.5     # the weights did move
    model = parameters(data)
    plain = torch.optim.SGD([{"params": [model[n] for n in SHAPES if n.endswith("weight")], "weight_decay": 1e-3},
                             {"params": [model[n] for n in SHAPES if not n.endswith("weight")], "weight_decay": 0}],
                            lr=0.1, momentum=0.9, nesterov=optimizer == "nag")
    plain_differences = differences(train(model, plain, data, range(len(LEARNING_RATES))), mxnet)
    assert plain_differences[10:].max() > 1e-3, plain_differences
    assert (plain_differences[:10].max() <= TOLERANCE) == (optimizer == "sgd"), plain_differences


@pytest.mark.parametrize("optimizer", ["sgd", "nag"])
def test_resume_through_the_state_dict_is_exact(tmp_path, optimizer):
    data = write_steps(tmp_path / "steps.npz")
    model = parameters(data)
    straight = train(model, backend_optimizer(model, optimizer, data), data, range(30))
    model = parameters(data)
    first = backend_optimizer(model, optimizer, data)
    train(model, first, data, range(15))
    saved = io.BytesIO()
    torch.save({"optimizer": first.state_dict(), "weights": model.state_dict()}, saved)
    saved.seek(0)
    loaded = torch.load(saved, weights_only=True)
    model = parameters(data)
    model.load_state_dict(loaded["weights"])
    second = backend_optimizer(model, optimizer, data)
    second.load_state_dict(loaded["optimizer"])
    resumed = train(model, second, data, range(15, 30))
    for name in SHAPES:
        np.testing.assert_array_equal(straight[name][15:], resumed[name], err_msg=name)


@pytest.mark.parametrize("optimizer", ["sgd", "nag"])
def test_torch_sgd_state_converts_exactly_at_a_constant_rate(tmp_path, optimizer):
    """A ``torch.optim.SGD`` state (an older PyTorch run's) loaded into `MXNetMomentum`
    continues as ``torch.optim.SGD`` would at the rate of its last step (without weight
    decay, where the NAG of both agrees at a constant rate)."""
    data = write_steps(tmp_path / "steps.npz", wd=0.0)
    model = parameters(data)
    groups = [{"params": [model[n] for n in SHAPES if n.endswith("weight")], "weight_decay": 0},
              {"params": [model[n] for n in SHAPES if not n.endswith("weight")], "weight_decay": 0}]
    plain = torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=optimizer == "nag")
    train(model, plain, data, range(5))
    state, weights = copy.deepcopy(plain.state_dict()), {name: param.detach().clone() for name, param in model.items()}
    assert is_torch_sgd_state(state)
    expected = train(model, plain, data, range(5, 10))
    model = parameters(data)
    model.load_state_dict(weights)
    converted = backend_optimizer(model, optimizer, data)
    converted.load_state_dict(state)
    assert not is_torch_sgd_state(converted.state_dict())
    continued = train(model, converted, data, range(5, 10))
    assert differences(continued, expected).max() <= 1e-6


def test_momentum_zero_and_frozen_parameters():
    """``--mom 0`` is MXNet's ``sgd_update`` (no state kept); a parameter without a gradient
    (frozen) is left alone: no decay, no momentum."""
    weight, frozen = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    plain = MXNetMomentum([weight, frozen], lr=0.5, momentum=0.0, weight_decay=0.1)
    weight.grad = torch.full((3,), 2.0)
    plain.step()
    torch.testing.assert_close(weight.detach(), torch.full((3,), (1 - 0.5 * 0.1) * 1 - 0.5 * 2.0))
    assert torch.equal(frozen.detach(), torch.ones(3)) and not plain.state
