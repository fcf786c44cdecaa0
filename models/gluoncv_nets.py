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
from mxnet.gluon import nn

from models.gluoncv_import import import_gluoncv

import_gluoncv()  # with PyTorch installed beside MXNet a plain `import gluoncv` fails
from gluoncv.model_zoo.densenet import DenseNet  # noqa: E402
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


def resnext_features(config):
    """The feature extractor of a (SE-)ResNeXt (``models.configs.ResNeXtConfig``)."""
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


def mxnet_symbol_layers(config):
    """``{layer name in MXNet's symbolic ResNeXt: structural path in this network}`` of a
    ResNeXt configuration with ``input_bn`` (None for the others).

    The symbol names (``example/image-classification/symbols/resnext.py``): ``bn_data``,
    ``conv0``, ``bn0``, then per unit ``stage{S}_unit{U}_conv{1,2,3}`` / ``_bn{1,2,3}`` and,
    in each stage's first unit, the projection ``_sc`` / ``_sc_bn``. A parameter's symbol
    name is its layer name, ``_``, and the parameter (``stage1_unit1_bn1_moving_mean``). The
    classifier ``fc1`` is named by the classifier's own prefix (see ``models.registry``).
    """
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


def densenet_features(config):
    """GluonCV's DenseNet features (``models.configs.DenseNetConfig``) with global instead
    of fixed 7x7 final pooling."""
    gluoncv_net = DenseNet(config.num_init_features, config.growth_rate, list(config.block_config),
                           bn_size=config.bn_size, prefix="")
    layers = list(gluoncv_net.features)
    if not isinstance(layers[-2], nn.AvgPool2D):
        raise RuntimeError("unexpected GluonCV DenseNet layout: %r" % layers[-2])
    features = nn.HybridSequential(prefix="")
    features.add(*layers[:-2], nn.GlobalAvgPool2D(), nn.Flatten(prefix="flatten_"))
    return features
