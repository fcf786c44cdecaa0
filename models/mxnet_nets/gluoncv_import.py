"""Import GluonCV in an MXNet process without letting it import PyTorch.

GluonCV 0.10's package ``__init__`` imports ``torch`` whenever it is installed, to check
its version, and raises ``RuntimeError`` for torch >= 2.0 (it only tolerates an
``ImportError``). In an environment holding both frameworks (``make venv`` installs the
PyTorch backend beside MXNet) every import of GluonCV would therefore fail, and would
first load PyTorch's OpenMP runtime into the MXNet process, which must never happen
(the two ship different runtimes under one soname). Marking ``torch`` as not importable
(``sys.modules["torch"] = None``, the import system's documented "absent" value) for the
duration of that one import makes GluonCV take its own "no PyTorch" branch.

Every MXNet-side module must import GluonCV through ``import_gluoncv()`` before any
``from gluoncv... import``; once imported, GluonCV stays in ``sys.modules``.
"""
import importlib
import sys


class FrameworkMixError(RuntimeError):
    """PyTorch is already loaded in this process, which is about to load MXNet/GluonCV."""


def import_gluoncv():
    """The ``gluoncv`` module, imported (once) with ``torch`` hidden from it."""
    if "gluoncv" in sys.modules:
        return sys.modules["gluoncv"]
    if sys.modules.get("torch") is not None:
        raise FrameworkMixError("torch is already imported in this process; MXNet/GluonCV and PyTorch "
                                "ship different OpenMP runtimes and must run in separate processes")
    hidden_here = "torch" not in sys.modules
    sys.modules["torch"] = None
    try:
        return importlib.import_module("gluoncv")
    finally:
        if hidden_here:
            del sys.modules["torch"]
