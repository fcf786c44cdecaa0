"""The registered networks built as MXNet Gluon blocks (uninitialised), and the MXNet-only
facts about them; what the pipeline knows about each network without MXNet (family,
input normalisation, feature width) is ``models.specs``.

Weight files whose names carry no network prefix use the published names: a network's own
symbol names (DPN, ``models.dpn``) or, for the ``*_mxnet`` ResNeXts, the layer names of
MXNet's symbolic ResNeXt (``published_layers``); ``models.weights`` reads both.
"""
import mxnet as mx
import numpy as np

from models.classifier import Classifier
from models import configs
from models.dpn import dpn_features
from models.gluoncv_nets import densenet_features, mxnet_symbol_layers, resnext_features

_FEATURES = {"dpn": dpn_features, "resnext": resnext_features, "densenet": densenet_features}


def feature_layer(name):
    """Name of the feature vector's output in the symbol written by
    ``models.export_symbolic`` (``sym.get_internals()[feature_layer(name)]``), the cut
    point where the classifier is replaced."""
    return "%s_flatten_flatten0_output" % name


def _classifier_prefix(family, config):
    """``fc6_`` for DPN and ``fc1_`` for MXNet's model-zoo ResNeXt form, as in their
    published checkpoints; GluonCV's ``output_`` otherwise."""
    if family == "dpn":
        return "fc6_"
    return "fc1_" if getattr(config, "input_bn", False) else "output_"


def published_layers(name):
    """``{layer name: structural path}`` under which published checkpoints of ``name`` name
    its layers when those names are not its own symbol names (the ``*_mxnet`` ResNeXts:
    MXNet's symbolic ResNeXt), or None."""
    family, config = configs.architecture(name)
    return mxnet_symbol_layers(config) if family == "resnext" else None


def build_network(name, classes, dropout=0.0, config_overrides=None):
    """The network ``name`` with ``classes`` outputs, parameters not yet initialised.

    Its prefix is ``name + "_"``, so parameter names (and exported symbol names) are the
    same every time the network is built. ``config_overrides``: fields replacing those of
    the registered configuration (``models.configs.architecture``); the network keeps
    them as ``net.config_overrides``, what a run must record to build it again.
    """
    family, config = configs.architecture(name, config_overrides)
    net = Classifier(lambda: _FEATURES[family](config), config.feature_channels(), classes, dropout,
                     classifier_prefix=_classifier_prefix(family, config), prefix=name + "_")
    net.config_overrides = configs.config_overrides(name, config)
    return net


def infer_parameter_shapes(net, image_size=64):
    """Fill in deferred parameter shapes symbolically: no memory is allocated."""
    net.infer_shape(mx.nd.zeros((1, 3, image_size, image_size)))


def count_parameters(name, classes=1000):
    """Trainable parameters of ``name`` (weights, biases, BN gamma/beta; not BN statistics)."""
    net = build_network(name, classes)
    infer_parameter_shapes(net)
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")
