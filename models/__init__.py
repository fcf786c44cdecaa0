"""Networks of the Cdiscount reproduction, by name: DPN (written here), (SE-)ResNeXt and
DenseNet (from GluonCV), each at 180x180 input, plus tiny CPU variants of each family.

    net = models.get_model("dpn92", classes=5270, pretrained="dpn92-0000.params")
    spec = models.get_spec("dpn92")   # input normalisation, feature layer, ...

The names below are imported on first use: importing the package itself loads no
framework, so a PyTorch process can use ``models.torch_nets``, ``models.params_file`` and
``models.weight_convert`` without MXNet (the two frameworks must not share a process).
"""
import importlib

_EXPORTS = {"export_symbolic": "models.export", "import_symbolic": "models.export",
            "get_model": "models.factory",
            "ModelSpec": "models.registry", "count_parameters": "models.registry", "get_spec": "models.registry",
            "list_models": "models.registry",
            "LoadReport": "models.weights", "WeightImportError": "models.weights",
            "WeightShapeError": "models.weights", "load_backbone": "models.weights"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError("module 'models' has no attribute %r" % name)
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
