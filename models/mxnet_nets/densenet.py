"""DenseNet backbones from GluonCV 0.10 (family ``models.families.densenet``).

GluonCV's ``DenseNet`` is used as is, so the structural parameter names are those of its
model-zoo files, but its final fixed 7x7 average pooling (which needs a 7x7 map, i.e.
224x224 input; 180x180 gives 5x5) is replaced by global average pooling, then a
``Flatten`` named ``flatten_``.
"""
from mxnet.gluon import nn

from models.mxnet_nets.gluoncv_import import import_gluoncv

import_gluoncv()  # with PyTorch installed beside MXNet a plain `import gluoncv` fails
from gluoncv.model_zoo.densenet import DenseNet  # noqa: E402


def features(config):
    """GluonCV's DenseNet features (``models.families.densenet.DenseNetConfig``) with global
    instead of fixed 7x7 final pooling."""
    gluoncv_net = DenseNet(config.num_init_features, config.growth_rate, list(config.block_config),
                           bn_size=config.bn_size, prefix="")
    layers = list(gluoncv_net.features)
    if not isinstance(layers[-2], nn.AvgPool2D):
        raise RuntimeError("unexpected GluonCV DenseNet layout: %r" % layers[-2])
    features = nn.HybridSequential(prefix="")
    features.add(*layers[:-2], nn.GlobalAvgPool2D(), nn.Flatten(prefix="flatten_"))
    return features


def classifier_prefix(config):
    """GluonCV's ``output_``."""
    return "output_"
