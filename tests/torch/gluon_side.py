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
"""
import json
import sys

import mxnet as mx
import numpy as np

from models.mxnet_nets.build import build_network
from models import mxnet_nets
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


OPS = {"export": export, "load": load, "backbone": backbone}


def main(path):
    with open(path, encoding="utf-8") as f:
        jobs = json.load(f)
    for job in jobs:
        OPS[job["op"]](job)
    if "torch" in sys.modules:
        raise RuntimeError("the MXNet side imported torch")


if __name__ == "__main__":
    main(sys.argv[1])
