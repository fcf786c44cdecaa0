"""The registered networks built as MXNet Gluon blocks (uninitialised), and the MXNet-only
facts about them; what the pipeline knows about each network without MXNet (family,
input normalisation, feature width) is ``models.specs``.

Each family (``models.families``) names the module of this package that builds its
feature extractor: ``features(config)`` gives the Gluon block, ``classifier_prefix(config)``
the name of the classifier in the family's published checkpoints (``fc6_`` for DPN,
``fc1_`` for MXNet's model-zoo ResNeXt, GluonCV's ``output_`` otherwise).
"""
import mxnet as mx
import numpy as np

from models import families
from models.mxnet_nets.classifier import Classifier

BACKEND = "mxnet"


def feature_layer(name):
    """Name of the feature vector's output in the symbol written by
    ``models.mxnet_nets.export.export_symbolic`` (``sym.get_internals()[feature_layer(name)]``),
    the cut point where the classifier is replaced."""
    return "%s_flatten_flatten0_output" % name


def build_network(name, classes, dropout=0.0, config_overrides=None):
    """The network ``name`` with ``classes`` outputs, parameters not yet initialised.

    Its prefix is ``name + "_"``, so parameter names (and exported symbol names) are the
    same every time the network is built. ``config_overrides``: fields replacing those of
    the registered configuration (``models.families.architecture``); the network keeps
    them as ``net.config_overrides``, what a run must record to build it again.
    """
    _, config = families.architecture(name, config_overrides)
    builder = families.family_of(name).builder(BACKEND)
    net = Classifier(lambda: builder.features(config), config.feature_channels(), classes, dropout,
                     classifier_prefix=builder.classifier_prefix(config), prefix=name + "_")
    net.config_overrides = families.config_overrides(name, config)
    return net


def infer_parameter_shapes(net, image_size=64):
    """Fill in deferred parameter shapes symbolically: no memory is allocated."""
    net.infer_shape(mx.nd.zeros((1, 3, image_size, image_size)))


def count_parameters(name, classes=1000):
    """Trainable parameters of ``name`` (weights, biases, BN gamma/beta; not BN statistics)."""
    net = build_network(name, classes)
    infer_parameter_shapes(net)
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")
