"""Networks of the Cdiscount reproduction by name, and the trained runs, without any framework.

    spec = models.get_spec("dpn92")   # family, input normalisation and size, feature width

The families are declared once (``models.families``: architectures, inputs, names across
frameworks, builders per backend); ``models.backends`` is the registry of the backends
that build them: MXNet Gluon (``models.mxnet_nets``: ``get_model(name, classes=5270,
pretrained=...)``) and PyTorch (``models.torch_nets``: ``create_torch_model``). A run
folder's contract is ``models.runs``, its log's format ``models.training_log``, weight
files between the frameworks ``models.params_file`` and ``models.weight_convert``.
Nothing at this level imports a framework: MXNet and PyTorch must never share a process,
and the GPU machines beyond Ampere have no MXNet.
"""
from models.specs import ModelSpec, get_spec, list_models

__all__ = ["ModelSpec", "get_spec", "list_models"]
