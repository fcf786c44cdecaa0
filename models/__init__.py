"""Networks of the Cdiscount reproduction, by name: DPN (written here), (SE-)ResNeXt and
DenseNet (from GluonCV), each at 180x180 input, plus tiny CPU variants of each family.

    net = models.get_model("dpn92", classes=5270, pretrained="dpn92-0000.params")
    spec = models.get_spec("dpn92")   # input normalisation, feature layer, ...
"""
from models.export import export_symbolic, import_symbolic
from models.factory import get_model
from models.registry import ModelSpec, count_parameters, get_spec, list_models
from models.weights import LoadReport, WeightImportError, WeightShapeError, load_backbone

__all__ = ["get_model", "get_spec", "list_models", "ModelSpec", "count_parameters", "load_backbone",
           "LoadReport", "WeightImportError", "WeightShapeError", "export_symbolic", "import_symbolic"]
