"""ResNeXt and SE-ResNeXt backbones built from GluonCV 0.10's blocks (family ``models.families.resnext``).

They keep GluonCV's layer layout exactly, so the structural parameter names
(``features.4.0.body.0.weight``, ...) are those of GluonCV's own networks and of its
model-zoo ``.params`` files. GluonCV's ``ResNext`` hard-codes a 64-channel stem and 64
base channels, so the tiny CPU variants could not be the same code. The stage assembly is
therefore written here around GluonCV's residual ``Block`` (which carries the optional
squeeze-excitation branch), with the stem and base widths as parameters; at their defaults
the layout equals ``gluoncv.model_zoo.resnext101_32x4d()`` (a test checks it). The
backbone ends with global pooling and a ``Flatten`` named ``flatten_``.

The ``*_mxnet`` ResNeXt variants are the same networks in the form of MXNet's symbolic
model-zoo checkpoints (``imagenet1k-resnext-101``, ``imagenet1k-resnext-101-64x4d``, built
by MXNet's ``example/image-classification/symbols/resnext.py``), from which the reference
started its ResNeXt runs: an input batch norm ``bn_data`` with fixed gamma before the stem,
and every batch norm with epsilon 2e-5 instead of Gluon's 1e-5. Their unit is GluonCV's
``Block`` (conv-BN-ReLU twice, conv-BN, projection shortcut in each stage's first unit,
ReLU after the sum, stride on the grouped 3x3), which is also the structure of those
symbols; ``models.families.resnext.mxnet_symbol_layers`` names their layers as the symbols do.
"""
from mxnet.gluon import nn

from models.mxnet_nets.gluoncv_import import import_gluoncv

import_gluoncv()  # with PyTorch installed beside MXNet a plain `import gluoncv` fails
from gluoncv.model_zoo.resnext import Block  # noqa: E402


def _resnext_stage(config, channels, n_blocks, stride, index):
    """One stage as in GluonCV's ``ResNext._make_layer``: a projecting first block."""
    stage = nn.HybridSequential(prefix="stage%d_" % index)
    with stage.name_scope():
        for i in range(n_blocks):
            stage.add(Block(channels, config.cardinality, config.bottleneck_width,
                            stride if i == 0 else 1, downsample=(i == 0), use_se=config.use_se,
                            norm_kwargs={"epsilon": config.bn_epsilon}, prefix=""))
    return stage


def features(config):
    """The feature extractor of a (SE-)ResNeXt (``models.families.resnext.ResNeXtConfig``)."""
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


def classifier_prefix(config):
    """``fc1_`` for MXNet's model-zoo form, as in its published checkpoints; GluonCV's ``output_``."""
    return "fc1_" if config.input_bn else "output_"
