"""The MXNet Gluon side of the models (the ``mxnet`` backend of ``models.backends``): the
networks as Gluon blocks (`build`, one module per family: `dpn`, `resnext`, `densenet`),
`get_model` with local ImageNet weights (`factory`, `weights`), the symbolic deployment
form (`export`) and a run's network back from its run folder (`runs`). Everything here
imports MXNet (GluonCV only through `gluoncv_import`): never in a PyTorch process.
"""
from models.mxnet_nets.build import count_parameters, feature_layer
from models.mxnet_nets.export import export_symbolic, import_symbolic
from models.mxnet_nets.factory import get_model
from models.mxnet_nets.weights import LoadReport, WeightImportError, WeightShapeError, load_backbone

__all__ = ["LoadReport", "WeightImportError", "WeightShapeError", "count_parameters", "export_symbolic",
           "feature_layer", "get_model", "import_symbolic", "load_backbone"]
