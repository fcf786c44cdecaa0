"""Deployment form: ``HybridBlock.export`` to ``prefix-symbol.json`` + ``prefix-NNNN.params``,
reloaded with ``SymbolBlock.imports``.

The exported checkpoint has the layout of MXNet's symbolic checkpoints (``arg:``/``aux:``
names), so ``models.load_backbone`` can also read it to seed another network.
"""
import os
import tempfile

import mxnet as mx
from mxnet import gluon


def symbolic_paths(prefix, epoch=0):
    """``(symbol file, params file)`` of the symbolic checkpoint ``prefix``/``epoch``."""
    return "%s-symbol.json" % prefix, "%s-%04d.params" % (prefix, epoch)


def export_symbolic(net, prefix, epoch=0, input_size=180):
    """Write ``net`` as a symbolic checkpoint; return ``(symbol file, params file)``.

    ``net`` is hybridized if it is not yet (exporting needs the cached graph, which one
    forward of a blank image on the parameters' first context builds). Both files are
    written under temporary names in the destination folder and renamed into place.
    """
    params = list(net.collect_params().values())
    ctx = params[0].list_ctx()[0]
    dtype = next((p.dtype for p in params if p.grad_req != "null"), "float32")
    net.hybridize()
    net(mx.nd.zeros((1, 3, input_size, input_size), ctx=ctx, dtype=dtype))
    targets = symbolic_paths(prefix, epoch)
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        tmp_prefix = os.path.join(tmp, os.path.basename(prefix))
        net.export(tmp_prefix, epoch=epoch)
        for written, target in zip(symbolic_paths(tmp_prefix, epoch), targets):
            os.replace(written, target)
    return targets


def import_symbolic(prefix, epoch=0, ctx=None):
    """The ``SymbolBlock`` of a checkpoint written by ``export_symbolic`` (input ``data``)."""
    symbol_file, params_file = symbolic_paths(prefix, epoch)
    return gluon.SymbolBlock.imports(symbol_file, ["data"], params_file, ctx=ctx or mx.cpu())
