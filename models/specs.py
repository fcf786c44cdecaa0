"""What the pipeline knows about each registered network, without any framework.

Training, prediction, reporting and both backends need a network's family, input
normalisation, input size and feature width; none of that depends on a framework, so it
is computed here from the families' declarations (``models.families``) and any process
(a predictor's parent, a PyTorch process, an MXNet one) can read it.

Input normalisation: every network here is fed NCHW float32 RGB as
``(pixel - spec.mean) * spec.scale``. The reference fine-tuned every network on raw
0-255 pixels (mean 0, scale 1), so that is the default spec (``normalization="raw"``).
``get_spec(name, normalization="imagenet")`` gives the normalisation the ImageNet weights
were trained with instead, as the network's family declares it (DPN's own mean (124, 117,
104) and scale 0.0167; GluonCV's for the others; raw 0-255 RGB for the ``*_mxnet``
ResNeXts, which normalise their input with their own input batch norm ``bn_data``).

timm's networks (``timm/<name>``, ``models.families.timm_models``) are not listed (any of
timm's names is one), and what their spec needs of timm (their ImageNet weights' mean and
per-channel scale, their feature width) is asked of the PyTorch side through their
family's builder: their spec can be read in a process that runs PyTorch, where they train.
"""
import dataclasses
from dataclasses import dataclass

from models.families import architecture, family_of, network_names

NORMALIZATIONS = ("raw", "imagenet")


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the pipeline needs to know about a network.

    ``family``: ``dpn``, ``resnext``, ``se_resnext``, ``densenet`` or ``timm``; ``mean``/``scale``:
    the input normalisation in use (see the module docstring; ``scale`` is one number, or
    one per channel for timm's networks); ``feature_channels``: the
    width of the feature vector the classifier reads; ``published_params``: parameter
    count at 1000 classes reported by the network's authors (None for variants defined here).
    """

    name: str
    family: str
    feature_channels: int
    mean: tuple = (0.0, 0.0, 0.0)
    scale: object = 1.0
    input_size: int = 180
    normalization: str = "raw"
    imagenet_mean: tuple = (0.0, 0.0, 0.0)
    imagenet_scale: object = 1.0
    published_params: int = None

    def with_normalization(self, normalization):
        """This spec with ``mean``/``scale`` set for ``"raw"`` (0-255) or ``"imagenet"``."""
        if normalization == "raw":
            return dataclasses.replace(self, normalization="raw", mean=(0.0, 0.0, 0.0), scale=1.0)
        if normalization == "imagenet":
            return dataclasses.replace(self, normalization="imagenet", mean=self.imagenet_mean,
                                       scale=self.imagenet_scale)
        raise ValueError("unknown normalization %r, choose from %s" % (normalization, NORMALIZATIONS))


def _raw_spec(name):
    family = family_of(name)
    config = architecture(name)[1]
    mean, scale = family.imagenet_input(config)
    published_m = family.published_params.get(name)
    return ModelSpec(name=name, family=family.kind_of(config), feature_channels=config.feature_channels(),
                     imagenet_mean=mean, imagenet_scale=scale,
                     published_params=None if published_m is None else int(published_m * 1e6))


def list_models():
    """Sorted names of every registered network (not the pattern-named ``timm/<name>``)."""
    return network_names()


def get_spec(name, normalization="raw"):
    """The ``ModelSpec`` of ``name``, with ``mean``/``scale`` for the given normalisation."""
    return _raw_spec(name).with_normalization(normalization)
