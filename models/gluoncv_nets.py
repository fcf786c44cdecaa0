"""ResNeXt, SE-ResNeXt and DenseNet backbones built from GluonCV 0.10's blocks.

Both keep GluonCV's layer layout exactly, so the structural parameter names
(``features.4.0.body.0.weight``, ...) are those of GluonCV's own networks and of its
model-zoo ``.params`` files, and change only where 180x180 input needs it:

- ResNeXt: GluonCV's ``ResNext`` hard-codes a 64-channel stem and 64 base channels, so
  the tiny CPU variants could not be the same code. The stage assembly is therefore
  written here around GluonCV's residual ``Block`` (which carries the optional
  squeeze-excitation branch), with the stem and base widths as parameters; at their
  defaults the layout equals ``gluoncv.model_zoo.resnext101_32x4d()`` (a test checks it).
- DenseNet: GluonCV's ``DenseNet`` is used as is, but its final fixed 7x7 average
  pooling (which needs a 7x7 map, i.e. 224x224 input; 180x180 gives 5x5) is replaced
  by global average pooling.

Every backbone ends with global pooling and a ``Flatten`` named ``flatten_``.

The ``*_mxnet`` ResNeXt variants are the same networks in the form of MXNet's symbolic
model-zoo checkpoints (``imagenet1k-resnext-101``, ``imagenet1k-resnext-101-64x4d``, built
by MXNet's ``example/image-classification/symbols/resnext.py``), from which the reference
started its ResNeXt runs: an input batch norm ``bn_data`` with fixed gamma before the stem,
and every batch norm with epsilon 2e-5 instead of Gluon's 1e-5. Their unit is GluonCV's
``Block`` (conv-BN-ReLU twice, conv-BN, projection shortcut in each stage's first unit,
ReLU after the sum, stride on the grouped 3x3), which is also the structure of those
symbols; ``mxnet_symbol_layers`` names their layers as the symbols do.
"""
import dataclasses
from dataclasses import dataclass

from mxnet.gluon import nn

from models.gluoncv_import import import_gluoncv

import_gluoncv()  # with PyTorch installed beside MXNet a plain `import gluoncv` fails
from gluoncv.model_zoo.densenet import DenseNet  # noqa: E402
from gluoncv.model_zoo.resnext import Block  # noqa: E402


@dataclass(frozen=True)
class ResNeXtConfig:
    """``layers``: blocks per stage; ``cardinality`` x ``bottleneck_width`` is the
    '32x4d' of the name; ``use_se`` adds squeeze-excitation (ratio 1/16) to every block;
    ``stem_stride`` is 2 in the published networks, 4 in the tiny CPU variants;
    ``input_bn`` puts MXNet's input batch norm ``bn_data`` (fixed gamma) before the stem and
    ``bn_epsilon`` is every batch norm's epsilon (see the module docstring)."""

    layers: tuple
    cardinality: int
    bottleneck_width: int
    use_se: bool = False
    stem_channels: int = 64
    base_channels: int = 64
    stem_stride: int = 2
    input_bn: bool = False
    bn_epsilon: float = 1e-5

    def feature_channels(self):
        return self.base_channels * 2 ** (len(self.layers) - 1) * 4


@dataclass(frozen=True)
class DenseNetConfig:
    """DenseNet-BC: stem width, growth rate k, layers per dense block, bottleneck factor."""

    num_init_features: int
    growth_rate: int
    block_config: tuple
    bn_size: int = 4

    def feature_channels(self):
        channels = self.num_init_features
        for i, n_layers in enumerate(self.block_config):
            channels += n_layers * self.growth_rate
            if i != len(self.block_config) - 1:
                channels //= 2
        return channels


_TINY_RESNEXT = dict(layers=(1, 1, 1, 1), cardinality=4, bottleneck_width=4, stem_channels=16, base_channels=16,
                     stem_stride=4)

RESNEXT_CONFIGS = {
    "resnext101_32x4d": ResNeXtConfig((3, 4, 23, 3), 32, 4),
    "resnext101_64x4d": ResNeXtConfig((3, 4, 23, 3), 64, 4),
    "se_resnext101_32x4d": ResNeXtConfig((3, 4, 23, 3), 32, 4, use_se=True),
    "se_resnext101_64x4d": ResNeXtConfig((3, 4, 23, 3), 64, 4, use_se=True),
    "resnext_tiny": ResNeXtConfig(**_TINY_RESNEXT),
    "se_resnext_tiny": ResNeXtConfig(use_se=True, **_TINY_RESNEXT),
}
# MXNet's symbolic ResNeXt (example/image-classification/symbols/resnext.py): eps 2e-5.
MXNET_SYMBOL_SUFFIX = "_mxnet"
MXNET_BN_EPSILON = 2e-5
RESNEXT_CONFIGS.update({name + MXNET_SYMBOL_SUFFIX: dataclasses.replace(config, input_bn=True,
                                                                         bn_epsilon=MXNET_BN_EPSILON)
                        for name, config in list(RESNEXT_CONFIGS.items())})

DENSENET_CONFIGS = {
    "densenet161": DenseNetConfig(96, 48, (6, 12, 36, 24)),
    "densenet169": DenseNetConfig(64, 32, (6, 12, 32, 32)),
    # Growth rate 16, not 8: MKL-DNN 1.9.1 fails ("could not construct a sub-memory") on
    # concatenations at offsets that are not multiples of 16.
    "densenet_tiny": DenseNetConfig(32, 16, (2, 2, 2, 2)),
}


def _resnext_stage(config, channels, n_blocks, stride, index):
    """One stage as in GluonCV's ``ResNext._make_layer``: a projecting first block."""
    stage = nn.HybridSequential(prefix="stage%d_" % index)
    with stage.name_scope():
        for i in range(n_blocks):
            stage.add(Block(channels, config.cardinality, config.bottleneck_width,
                            stride if i == 0 else 1, downsample=(i == 0), use_se=config.use_se,
                            norm_kwargs={"epsilon": config.bn_epsilon}, prefix=""))
    return stage


def resnext_features(variant):
    """The feature extractor of a registered (SE-)ResNeXt variant."""
    config = RESNEXT_CONFIGS[variant]
    features = nn.HybridSequential(prefix="")
    with features.name_scope():
        if config.input_bn:
            features.add(nn.BatchNorm(scale=False, epsilon=config.bn_epsilon, in_channels=3))
        features.add(nn.Conv2D(config.stem_channels, kernel_size=7, strides=config.stem_stride, padding=3,
                               use_bias=False),
                     nn.BatchNorm(epsilon=config.bn_epsilon),
                     nn.Activation("relu"),
                     nn.MaxPool2D(3, 2, 1))
        channels = config.base_channels
        for i, n_blocks in enumerate(config.layers):
            features.add(_resnext_stage(config, channels, n_blocks, 1 if i == 0 else 2, i + 1))
            channels *= 2
        features.add(nn.GlobalAvgPool2D(), nn.Flatten(prefix="flatten_"))
    return features


def mxnet_symbol_layers(variant):
    """``{layer name in MXNet's symbolic ResNeXt: structural path in this network}`` of a
    ResNeXt variant with ``input_bn`` (None for the others).

    The symbol names (``example/image-classification/symbols/resnext.py``): ``bn_data``,
    ``conv0``, ``bn0``, then per unit ``stage{S}_unit{U}_conv{1,2,3}`` / ``_bn{1,2,3}`` and,
    in each stage's first unit, the projection ``_sc`` / ``_sc_bn``. A parameter's symbol
    name is its layer name, ``_``, and the parameter (``stage1_unit1_bn1_moving_mean``). The
    classifier ``fc1`` is named by the classifier's own prefix (see ``models.registry``).
    """
    config = RESNEXT_CONFIGS[variant]
    if not config.input_bn:
        return None
    layers = {"bn_data": "features.0", "conv0": "features.1", "bn0": "features.2"}
    # GluonCV Block: body = conv, BN, ReLU, grouped conv, BN, ReLU, conv, BN; downsample = conv, BN.
    unit_layers = {"conv1": "body.0", "bn1": "body.1", "conv2": "body.3", "bn2": "body.4", "conv3": "body.6",
                   "bn3": "body.7"}
    first_stage = 5            # after bn_data, conv0, bn0, relu0 and the max pooling
    for s, n_units in enumerate(config.layers):
        for u in range(n_units):
            unit, path = "stage%d_unit%d_" % (s + 1, u + 1), "features.%d.%d." % (first_stage + s, u)
            names = dict(unit_layers, **({"sc": "downsample.0", "sc_bn": "downsample.1"} if u == 0 else {}))
            layers.update({unit + name: path + layer for name, layer in names.items()})
    return layers


def densenet_features(variant):
    """GluonCV's DenseNet features with global instead of fixed 7x7 final pooling."""
    config = DENSENET_CONFIGS[variant]
    gluoncv_net = DenseNet(config.num_init_features, config.growth_rate, list(config.block_config),
                           bn_size=config.bn_size, prefix="")
    layers = list(gluoncv_net.features)
    if not isinstance(layers[-2], nn.AvgPool2D):
        raise RuntimeError("unexpected GluonCV DenseNet layout: %r" % layers[-2])
    features = nn.HybridSequential(prefix="")
    features.add(*layers[:-2], nn.GlobalAvgPool2D(), nn.Flatten(prefix="flatten_"))
    return features
