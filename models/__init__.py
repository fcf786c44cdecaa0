"""Networks of the Cdiscount reproduction, by name: DPN (written here), (SE-)ResNeXt and
DenseNet (from GluonCV), each at 180x180 input, plus tiny CPU variants of each family.

    net = models.get_model("dpn92", classes=5270, pretrained="dpn92-0000.params")
    spec = models.get_spec("dpn92")   # family, input normalisation and size, feature width

The names below are imported on first use: importing the package itself loads no
framework, and ``ModelSpec``, ``get_spec`` and ``list_models`` (``models.specs``) load
none either, so a PyTorch process or a predictor's parent can use them, like
``models.configs``, ``models.params_file`` and ``models.weight_convert``, without MXNet
(the two frameworks must not share a process). The others build MXNet networks.
"""
import importlib

_EXPORTS = {"export_symbolic": "models.export", "import_symbolic": "models.export",
            "get_model": "models.factory",
            "ModelSpec": "models.specs", "count_parameters": "models.registry", "get_spec": "models.specs",
            "list_models": "models.specs",
            "LoadReport": "models.weights", "WeightImportError": "models.weights",
            "WeightShapeError": "models.weights", "load_backbone": "models.weights"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'models' has no attribute %r" % name)
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
