"""Gluon's initialisation for the PyTorch twins, so that the layers a run starts fresh start
alike on both backends (``models.torch_nets.build.create_torch_model`` applies it)."""
import math

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd


@torch.no_grad()
def initialise_as_gluon(model):
    """`model` with every convolution and fully connected layer initialised as
    ``models.mxnet_nets.factory.DEFAULT_INITIALIZER`` does it on the Gluon side: MXNet's
    ``Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)`` draws the weights from
    N(0, sqrt(2 / fan_in)), fan_in = in_channels / groups * kernel height * kernel width,
    and the biases are 0 (Gluon's ``bias_initializer``). The layers a run does not load
    start so on both backends: a new classifier (timm's gives DPN-92's a std of 0.0111 and
    non-zero biases, Gluon's 0.0273 and zeros) and the squeeze-excitations of an
    SE-ResNeXt started from a ResNeXt (timm's ``fan_out`` swaps their two stds). Batch norms
    keep their builders' start, which is Gluon's (gamma 1, beta 0, mean 0, variance 1)."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, _ConvNd)):
            fan_in = module.weight.shape[1] * math.prod(module.weight.shape[2:])
            module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            if module.bias is not None:
                module.bias.zero_()
    return model
