"""PyTorch tests: run in their own pytest process (``pytest tests/torch``), never together
with the MXNet suite (``pytest tests --ignore=tests/torch``): MXNet and PyTorch ship
different OpenMP runtimes and must not share a process. Whatever these tests need from
MXNet runs in a child process (``gluon_side.py``, through ``twin_helpers``)."""
import json
import sys

import pytest

from twin_helpers import run_gluon_side

_MIX = ("mxnet is imported in this pytest process; run the PyTorch tests on their own: "
        "pytest tests/torch (and the rest as pytest tests --ignore=tests/torch)")
assert "mxnet" not in sys.modules, _MIX


@pytest.fixture(autouse=True)
def _no_mxnet_in_this_process():
    yield
    assert "mxnet" not in sys.modules, _MIX


@pytest.fixture(scope="session")
def gluon_facts(tmp_path_factory):
    """``{network: {family, feature_channels, published_params}}`` from MXNet's registry."""
    folder = tmp_path_factory.mktemp("facts")
    out = str(folder / "facts.json")
    run_gluon_side([{"op": "facts", "out": out}], folder, "facts")
    with open(out, encoding="utf-8") as f:
        return json.load(f)
