"""What the pipeline knows about each registered network, without any framework.

Training, prediction, reporting and the PyTorch side all need a network's family, input
normalisation, input size and feature width; none of that depends on MXNet, so it is
computed here from the architectures (``models.configs``) and a process without MXNet
(a predictor's parent, a PyTorch process) can read it. ``models.registry`` builds the
MXNet networks named here.

Input normalisation: every network here is fed NCHW float32 RGB as
``(pixel - spec.mean) * spec.scale``. The reference fine-tuned every network on raw
0-255 pixels (mean 0, scale 1), so that is the default spec (``normalization="raw"``).
``get_spec(name, normalization="imagenet")`` gives the normalisation the ImageNet weights
were trained with instead: DPN's own mean (124, 117, 104) and scale 0.0167, or for the
GluonCV networks mean 255 x (0.485, 0.456, 0.406) and one scale 1 / (255 x 0.226), the
mean of GluonCV's per-channel std (0.229, 0.224, 0.225), which differ from it by < 1.5 %.
The ``*_mxnet`` ResNeXts (MXNet's model-zoo form) normalise their input with their own
input batch norm ``bn_data``: their ImageNet input is raw 0-255 RGB as well.
"""
import dataclasses
from dataclasses import dataclass

from models.configs import MXNET_SYMBOL_SUFFIX, architecture, network_names

NORMALIZATIONS = ("raw", "imagenet")
DPN_IMAGENET = ((124.0, 117.0, 104.0), 0.0167)
GLUONCV_IMAGENET = ((123.675, 116.28, 103.53), 1.0 / (255 * 0.226))
RAW = ((0.0, 0.0, 0.0), 1.0)

# Parameter counts at 1000 classes, in millions, as published (REFERENCE.md; SE-ResNeXt-101
# 64x4d is given there as "~88 M"); the ``*_mxnet`` forms share their network's count.
_PUBLISHED_M = {"dpn92": 37.7, "dpn98": 61.6, "dpn107": 86.9, "dpn131": 79.3,
                "resnext101_32x4d": 44.2, "resnext101_64x4d": 83.5, "se_resnext101_64x4d": 88.0,
                "densenet161": 28.7}


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the pipeline needs to know about a network.

    ``family``: ``dpn``, ``resnext``, ``se_resnext`` or ``densenet``; ``mean``/``scale``:
    the input normalisation in use (see the module docstring); ``feature_channels``: the
    width of the feature vector the classifier reads; ``published_params``: parameter
    count at 1000 classes reported by the network's authors (None for variants defined here).
    """

    name: str
    family: str
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


def _imagenet_input(family, config):
    if family == "dpn":
        return DPN_IMAGENET
    return RAW if getattr(config, "input_bn", False) else GLUONCV_IMAGENET


def _raw_spec(name):
    family, config = architecture(name)
    mean, scale = _imagenet_input(family, config)
    published_m = _PUBLISHED_M.get(name[:-len(MXNET_SYMBOL_SUFFIX)] if name.endswith(MXNET_SYMBOL_SUFFIX) else name)
    return ModelSpec(name=name, family="se_resnext" if getattr(config, "use_se", False) else family,
                     feature_channels=config.feature_channels(), imagenet_mean=mean, imagenet_scale=scale,
                     published_params=None if published_m is None else int(published_m * 1e6))


def list_models():
    """Sorted names of every registered network."""
    return network_names()


def get_spec(name, normalization="raw"):
    """The ``ModelSpec`` of ``name``, with ``mean``/``scale`` for the given normalisation."""
    return _raw_spec(name).with_normalization(normalization)
