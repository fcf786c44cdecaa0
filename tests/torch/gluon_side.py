"""The MXNet half of the PyTorch tests, run as its own process (never imported by pytest).

    python tests/torch/gluon_side.py jobs.json

``jobs.json`` is a list of jobs, run in order in this one process (one MXNet start-up):

- ``{"op": "export", "name", "classes", "seed", "params", "out"}``: build the Gluon
  network, give every parameter random values (``seed``, ``twin_helpers.random_values``),
  save them with ``save_parameters`` to ``params``; write ``out`` (.npz) with the input
  ``x`` (``twin_helpers.images``), the ``logits`` and the ``features`` (``net.features(x)``).
- ``{"op": "load", "name", "classes", "params", "x", "out"}``: the network with the
  weights of ``params`` (``load_parameters``); ``out`` gets its logits and features on
  the ``x`` of the .npz file ``x``.
- ``{"op": "backbone", ...}``: as ``load``, but through ``mxnet_nets.get_model(...,
  pretrained=params)``, which takes the file's backbone and keeps a fresh classifier.
- ``{"op": "init", "name", "classes", "params", "out"}``: a fresh ``mxnet_nets.get_model``
  network (the project's initialiser); ``out`` gets the values of the structural names
  ``params``.
- ``{"op": "momentum", "data", "optimizer", "api", "out"}``: ``sgd`` or ``nag`` over the
  weights ``w0_<name>``, gradients ``g_<name>`` (one per step) and learning rates ``lrs`` of
  the .npz file ``data`` (names ending in ``weight`` decay by ``wd``, the others not), through
  ``api`` ``trainer`` (the MXNet backend's optimizer and weight-decay convention in a Gluon
  Trainer) or ``operator`` (``mx.nd.sgd_mom_update``/``nag_mom_update`` in place, as
  ``mx.optimizer.SGD``/``NAG`` call them); ``out`` gets ``w_<name>``, the weights after
  every step.
"""
import json
import sys

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from models.mxnet_nets.build import build_network
from models import mxnet_nets
from models.mxnet_nets.weights import structural_names
from train.mxnet_backend import optim
from twin_helpers import images, random_values


def role(name):
    """The role of a Gluon parameter for ``twin_helpers.random_values``."""
    for suffix, kind in (("running_var", "running_var"), ("gamma", "gamma"), ("beta", "shift"), ("bias", "shift"),
                         ("running_mean", "shift")):
        if name.endswith(suffix):
            return kind
    return "weight"


def randomize(net, seed):
    rng = np.random.RandomState(seed)
    for param in net.collect_params().values():
        param.set_data(mx.nd.array(random_values(role(param.name), param.shape, rng), dtype=param.dtype))


def forward(net, x):
    data = mx.nd.array(x)
    return {"x": x, "logits": net(data).asnumpy(), "features": net.features(data).asnumpy()}


def export(job):
    net = mxnet_nets.get_model(job["name"], classes=job["classes"])
    randomize(net, job["seed"])
    net.save_parameters(job["params"])
    np.savez(job["out"], **forward(net, images(job["seed"])))


def load(job):
    net = build_network(job["name"], job["classes"])
    net.load_parameters(job["params"])
    np.savez(job["out"], **forward(net, np.load(job["x"])["x"]))


def backbone(job):
    net = mxnet_nets.get_model(job["name"], classes=job["classes"], pretrained=job["params"])
    np.savez(job["out"], **forward(net, np.load(job["x"])["x"]))


def init(job):
    net = mxnet_nets.get_model(job["name"], classes=job["classes"])
    params = structural_names(net)
    np.savez(job["out"], **{name: params[name].data().asnumpy() for name in job["params"]})


def momentum(job):
    with np.load(job["data"]) as data:
        data = {key: data[key] for key in data.files}
    names, kind = [str(name) for name in data["names"]], job["optimizer"]
    weights = {name: mx.nd.array(data["w0_" + name]) for name in names}
    history = {name: [] for name in names}
    if job["api"] == "trainer":
        params = gluon.ParameterDict()
        for name in names:
            params.get(name, shape=weights[name].shape).initialize(ctx=mx.cpu())
            params[name].set_data(weights[name])
        optim.apply_weight_decay_convention(params)
        trainer = gluon.Trainer(params, optim.create_optimizer(kind, float(data["lrs"][0]), wd=float(data["wd"]),
                                                               momentum=float(data["momentum"])))
    else:
        increments = {name: mx.nd.zeros(weights[name].shape) for name in names}
        update = mx.nd.sgd_mom_update if kind == "sgd" else mx.nd.nag_mom_update
    for step, lr in enumerate(data["lrs"]):
        if job["api"] == "trainer":
            with autograd.record():      # the gradient of sum(w * g) is g
                total = mx.nd.add_n(*[(params[name].data() * mx.nd.array(data["g_" + name][step])).sum()
                                      for name in names])
            total.backward()
            trainer.set_learning_rate(float(lr))
            trainer.step(1)
            current = {name: params[name].data() for name in names}
        else:
            for name in names:
                update(weights[name], mx.nd.array(data["g_" + name][step]), increments[name], out=weights[name],
                       lr=float(lr), momentum=float(data["momentum"]),
                       wd=float(data["wd"]) if optim.decays(name) else 0.0)
            current = weights
        for name in names:
            history[name].append(current[name].asnumpy())
    np.savez(job["out"], **{"w_" + name: np.stack(values) for name, values in history.items()})


OPS = {"export": export, "load": load, "backbone": backbone, "init": init, "momentum": momentum}


def main(path):
    with open(path, encoding="utf-8") as f:
        jobs = json.load(f)
    for job in jobs:
        OPS[job["op"]](job)
    if "torch" in sys.modules:
        raise RuntimeError("the MXNet side imported torch")


if __name__ == "__main__":
    main(sys.argv[1])
