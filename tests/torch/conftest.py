"""PyTorch tests: run in their own pytest process (``pytest tests/torch``), never together
with the MXNet suite (``pytest tests --ignore=tests/torch``): MXNet and PyTorch ship
different OpenMP runtimes and must not share a process. Whatever these tests need from
MXNet runs in a child process (``gluon_side.py``, through ``twin_helpers``)."""
import sys

import pytest

_MIX = ("mxnet is imported in this pytest process; run the PyTorch tests on their own: "
        "pytest tests/torch (and the rest as pytest tests --ignore=tests/torch)")
assert "mxnet" not in sys.modules, _MIX


@pytest.fixture(autouse=True)
def _no_mxnet_in_this_process():
    yield
    assert "mxnet" not in sys.modules, _MIX
