"""The PyTorch side of the models (the ``torch`` backend of ``models.backends``): the networks
built from timm's classes (`build`, one module per family), their weight files (`weights`),
the pictures decoded and resized on a PyTorch device (`images`) and device names
(`devices`), which PyTorch training (``train.torch_backend``) and the predictor's PyTorch
model worker (``predict.torch_runner``) share. Everything here imports PyTorch: never in an
MXNet process.
"""
from models.torch_nets.build import count_parameters, create_torch_model

__all__ = ["count_parameters", "create_torch_model"]
