"""Registry of the networks by name: their specs and how to build them (uninitialised).

Input normalisation: every network here is fed NCHW float32 RGB as
``(pixel - spec.mean) * spec.scale``. The reference fine-tuned every network on raw
0-255 pixels (mean 0, scale 1), so that is the default spec (``normalization="raw"``).
``get_spec(name, normalization="imagenet")`` gives the normalisation the ImageNet weights
were trained with instead: DPN's own mean (124, 117, 104) and scale 0.0167, or for the
GluonCV networks mean 255 x (0.485, 0.456, 0.406) and one scale 1 / (255 x 0.226), the
mean of GluonCV's per-channel std (0.229, 0.224, 0.225), which differ from it by < 1.5 %.
The ``*_mxnet`` ResNeXts (MXNet's model-zoo form) normalise their input with their own
input batch norm ``bn_data``: their ImageNet input is raw 0-255 RGB as well.

Weight files whose names carry no network prefix use the published names: a network's own
symbol names (DPN, ``models.dpn``) or, for the ``*_mxnet`` ResNeXts, the layer names of
MXNet's symbolic ResNeXt (``published_layers``); ``models.weights`` reads both.
"""
import dataclasses
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from models.classifier import Classifier
from models.dpn import DPN_CONFIGS, dpn_features
from models.gluoncv_nets import (DENSENET_CONFIGS, MXNET_SYMBOL_SUFFIX, RESNEXT_CONFIGS, densenet_features,
                                 mxnet_symbol_layers, resnext_features)

NORMALIZATIONS = ("raw", "imagenet")
DPN_IMAGENET = ((124.0, 117.0, 104.0), 0.0167)
GLUONCV_IMAGENET = ((123.675, 116.28, 103.53), 1.0 / (255 * 0.226))
RAW = ((0.0, 0.0, 0.0), 1.0)


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the pipeline needs to know about a network.

    ``mean``/``scale``: the input normalisation in use (see the module docstring);
    ``feature_layer``: name of the feature vector's output in the symbol written by
    ``models.export_symbolic`` (``sym.get_internals()[spec.feature_layer]``), the cut
    point where the classifier is replaced; ``feature_channels``: its width;
    ``published_params``: parameter count at 1000 classes reported by the network's
    authors (None for variants defined here).
    """

    name: str
    family: str
    feature_layer: str
    feature_channels: int
    mean: tuple = (0.0, 0.0, 0.0)
    scale: float = 1.0
    input_size: int = 180
    normalization: str = "raw"
    imagenet_mean: tuple = (0.0, 0.0, 0.0)
    imagenet_scale: float = 1.0
    published_params: int = None

    def with_normalization(self, normalization):
        """This spec with ``mean``/``scale`` set for ``"raw"`` (0-255) or ``"imagenet"``."""
        if normalization == "raw":
            return dataclasses.replace(self, normalization="raw", mean=(0.0, 0.0, 0.0), scale=1.0)
        if normalization == "imagenet":
            return dataclasses.replace(self, normalization="imagenet", mean=self.imagenet_mean,
                                       scale=self.imagenet_scale)
        raise ValueError("unknown normalization %r, choose from %s" % (normalization, NORMALIZATIONS))


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    build_features: object  # () -> HybridBlock, called inside the classifier's name scope
    classifier_prefix: str
    published_layers: dict = None  # {published layer name: structural path}, see published_layers


def _entry(name, family, config, build_features, imagenet, published_m, classifier_prefix="output_",
           published_layers=None):
    mean, scale = imagenet
    spec = ModelSpec(name=name, family=family, feature_layer="%s_flatten_flatten0_output" % name,
                     feature_channels=config.feature_channels(), imagenet_mean=mean, imagenet_scale=scale,
                     published_params=None if published_m is None else int(published_m * 1e6))
    return _Entry(spec, lambda: build_features(name), classifier_prefix, published_layers)


# Parameter counts at 1000 classes, in millions, as published (REFERENCE.md; SE-ResNeXt-101
# 64x4d is given there as "~88 M").
_PUBLISHED_M = {"dpn92": 37.7, "dpn98": 61.6, "dpn107": 86.9, "dpn131": 79.3,
                "resnext101_32x4d": 44.2, "resnext101_64x4d": 83.5, "se_resnext101_64x4d": 88.0,
                "densenet161": 28.7}

_REGISTRY = {}
for _name, _config in DPN_CONFIGS.items():
    _REGISTRY[_name] = _entry(_name, "dpn", _config, dpn_features, DPN_IMAGENET, _PUBLISHED_M.get(_name),
                              classifier_prefix="fc6_")
for _name, _config in RESNEXT_CONFIGS.items():
    _family = "se_resnext" if _config.use_se else "resnext"
    _base = _name[:-len(MXNET_SYMBOL_SUFFIX)] if _config.input_bn else _name
    # The MXNet model-zoo form: raw input, its classifier named fc1 as in those checkpoints.
    _REGISTRY[_name] = _entry(_name, _family, _config, resnext_features,
                              RAW if _config.input_bn else GLUONCV_IMAGENET, _PUBLISHED_M.get(_base),
                              classifier_prefix="fc1_" if _config.input_bn else "output_",
                              published_layers=mxnet_symbol_layers(_name))
for _name, _config in DENSENET_CONFIGS.items():
    _REGISTRY[_name] = _entry(_name, "densenet", _config, densenet_features, GLUONCV_IMAGENET,
                              _PUBLISHED_M.get(_name))


def list_models():
    """Sorted names of every registered network."""
    return sorted(_REGISTRY)


def _lookup(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError("unknown model %r; known models: %s" % (name, ", ".join(list_models()))) from None


def get_spec(name, normalization="raw"):
    """The ``ModelSpec`` of ``name``, with ``mean``/``scale`` for the given normalisation."""
    return _lookup(name).spec.with_normalization(normalization)


def published_layers(name):
    """``{layer name: structural path}`` under which published checkpoints of ``name`` name
    its layers when those names are not its own symbol names (the ``*_mxnet`` ResNeXts:
    MXNet's symbolic ResNeXt), or None."""
    return _lookup(name).published_layers


def build_network(name, classes, dropout=0.0):
    """The network ``name`` with ``classes`` outputs, parameters not yet initialised.

    Its prefix is ``name + "_"``, so parameter names (and exported symbol names) are the
    same every time the network is built.
    """
    entry = _lookup(name)
    return Classifier(entry.build_features, entry.spec.feature_channels, classes, dropout,
                      classifier_prefix=entry.classifier_prefix, prefix=name + "_")


def infer_parameter_shapes(net, image_size=64):
    """Fill in deferred parameter shapes symbolically: no memory is allocated."""
    net.infer_shape(mx.nd.zeros((1, 3, image_size, image_size)))


def count_parameters(name, classes=1000):
    """Trainable parameters of ``name`` (weights, biases, BN gamma/beta; not BN statistics)."""
    net = build_network(name, classes)
    infer_parameter_shapes(net)
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values() if p.grad_req != "null")
