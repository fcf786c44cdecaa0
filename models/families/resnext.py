"""ResNeXt and SE-ResNeXt (GluonCV's ``Block``), in GluonCV's form and in MXNet's model-zoo form.

Gluon: ``models.mxnet_nets.resnext`` (GluonCV's blocks); PyTorch: ``models.torch_nets.resnext``
(timm's ``ResNet`` of ``Bottleneck`` blocks, whose state dicts timm's ``*.gluon_in1k``
ImageNet files fill). The ``*_mxnet`` variants are the same networks in the form of
MXNet's symbolic model-zoo checkpoints (``imagenet1k-resnext-101``, built by MXNet's
``example/image-classification/symbols/resnext.py``), from which the reference started its
ResNeXt runs: an input batch norm ``bn_data`` with fixed gamma before the stem, every batch
norm with epsilon 2e-5, and the layer names of those symbols (`mxnet_symbol_layers`).
"""
import dataclasses
from dataclasses import dataclass

from models.families import GLUON_CLASSIFIER, ArchitectureError, Family, Layer, register

# GluonCV's ImageNet input: mean 255 x (0.485, 0.456, 0.406) and one scale 1 / (255 x 0.226),
# the mean of its per-channel std (0.229, 0.224, 0.225), which differ from it by < 1.5 %.
GLUONCV_IMAGENET = ((123.675, 116.28, 103.53), 1.0 / (255 * 0.226))
# The model-zoo form normalises its input with its own input batch norm: raw 0-255 RGB.
RAW_INPUT = ((0.0, 0.0, 0.0), 1.0)
# MXNet's symbolic ResNeXt (example/image-classification/symbols/resnext.py): eps 2e-5.
MXNET_SYMBOL_SUFFIX = "_mxnet"
MXNET_BN_EPSILON = 2e-5


@dataclass(frozen=True)
class ResNeXtConfig:
    """``layers``: blocks per stage; ``cardinality`` x ``bottleneck_width`` is the '32x4d'
    of the name; ``use_se`` adds squeeze-excitation (ratio 1/16) to every block;
    ``stem_stride`` is 2 in the published networks, 4 in the tiny CPU variants;
    ``input_bn`` puts MXNet's input batch norm ``bn_data`` (fixed gamma) before the stem
    and ``bn_epsilon`` is every batch norm's epsilon. The widths of a network built from
    a file of MXNet's symbolic ResNeXt come from the file (`resnext_widths`)."""

    layers: tuple
    cardinality: int
    bottleneck_width: int
    use_se: bool = False
    stem_channels: int = 64
    base_channels: int = 64
    stem_stride: int = 2
    input_bn: bool = False
    bn_epsilon: float = 1e-5

    def stage_channels(self):
        """Bottleneck-block ``planes`` of every stage (the block outputs 4x as many)."""
        return tuple(self.base_channels * 2 ** i for i in range(len(self.layers)))

    def stage_bottlenecks(self):
        """``(group width, groups)`` of every stage's grouped 3x3 convolution, as GluonCV's
        ``Block`` and timm's ``Bottleneck`` compute it: cardinality x
        floor(planes x bottleneck_width / 64)."""
        return tuple((self.cardinality * (planes * self.bottleneck_width // 64), self.cardinality)
                     for planes in self.stage_channels())

    def feature_channels(self):
        return self.stage_channels()[-1] * 4


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
RESNEXT_CONFIGS.update({name + MXNET_SYMBOL_SUFFIX: dataclasses.replace(config, input_bn=True,
                                                                         bn_epsilon=MXNET_BN_EPSILON)
                        for name, config in list(RESNEXT_CONFIGS.items())})

# Published parameter counts at 1000 classes, in millions (SE-ResNeXt-101 64x4d: "~88 M");
# the ``*_mxnet`` forms share their network's count.
_PUBLISHED_M = {"resnext101_32x4d": 44.2, "resnext101_64x4d": 83.5, "se_resnext101_64x4d": 88.0}
PUBLISHED_M = {**_PUBLISHED_M, **{name + MXNET_SYMBOL_SUFFIX: m for name, m in _PUBLISHED_M.items()}}


def resnext_widths(weight_shapes, stages):
    """``{field: value}`` of ``stem_channels``, ``base_channels``, ``cardinality`` and
    ``bottleneck_width`` of the ResNeXt of MXNet's symbolic form
    (``example/image-classification/symbols/resnext.py``) whose layers have
    ``weight_shapes``: ``{layer name: weight shape}`` for ``conv0`` and each stage's
    ``stage{S}_unit1_conv2`` / ``_conv3``, ``stages`` stages.

    That file sets every unit's bottleneck to half its output width in ``num_group``
    groups, so a file's widths need not be those of its name (``num_group=64`` gives
    64 groups of 2 channels in the first stage where GluonCV's 64x4d has 64 of 4). They
    are read here and expressed as GluonCV's ``Block`` computes its widths
    (``ResNeXtConfig.stage_bottlenecks``); ``ArchitectureError`` if no cardinality and
    bottleneck width give every stage's.
    """
    convs = [(weight_shapes["stage%d_unit1_conv2" % s], weight_shapes["stage%d_unit1_conv3" % s])
             for s in range(1, stages + 1)]
    (group_width, per_group, _, _), (out_channels, _, _, _) = convs[0]
    widths = dict(stem_channels=weight_shapes["conv0"][0], base_channels=out_channels // 4,
                  cardinality=group_width // per_group, bottleneck_width=64 * per_group * 4 // out_channels)
    config = ResNeXtConfig(layers=(1,) * stages, **widths)
    found = tuple(((conv2[0], conv2[0] // conv2[1]), conv3[0]) for conv2, conv3 in convs)
    expected = tuple(zip(config.stage_bottlenecks(), (4 * planes for planes in config.stage_channels())))
    if found != expected:
        raise ArchitectureError("ResNeXt stages of ((group width, groups), output width) %s: no cardinality x "
                                "bottleneck width gives them (%s would give %s)" % (found, widths, expected))
    return widths


def mxnet_symbol_layers(config):
    """``{layer name in MXNet's symbolic ResNeXt: structural path in the Gluon network}`` of a
    ResNeXt configuration with ``input_bn`` (None for the others).

    The symbol names (``example/image-classification/symbols/resnext.py``): ``bn_data``,
    ``conv0``, ``bn0``, then per unit ``stage{S}_unit{U}_conv{1,2,3}`` / ``_bn{1,2,3}`` and,
    in each stage's first unit, the projection ``_sc`` / ``_sc_bn``. A parameter's symbol
    name is its layer name, ``_``, and the parameter (``stage1_unit1_bn1_moving_mean``). The
    classifier ``fc1`` is named by the classifier's own prefix (``models.mxnet_nets.resnext``).
    """
    if not config.input_bn:
        return None
    table = {"bn_data": "features.0", "conv0": "features.1", "bn0": "features.2"}
    # GluonCV Block: body = conv, BN, ReLU, grouped conv, BN, ReLU, conv, BN; downsample = conv, BN.
    unit_layers = {"conv1": "body.0", "bn1": "body.1", "conv2": "body.3", "bn2": "body.4", "conv3": "body.6",
                   "bn3": "body.7"}
    first_stage = 5            # after bn_data, conv0, bn0, relu0 and the max pooling
    for s, n_units in enumerate(config.layers):
        for u in range(n_units):
            unit, path = "stage%d_unit%d_" % (s + 1, u + 1), "features.%d.%d." % (first_stage + s, u)
            names = dict(unit_layers, **({"sc": "downsample.0", "sc_bn": "downsample.1"} if u == 0 else {}))
            table.update({unit + name: path + layer for name, layer in names.items()})
    return table


# GluonCV's ResNeXt ``Block``: body = conv, BN, ReLU, grouped conv, BN, ReLU, conv, BN;
# se = conv, ReLU, conv, sigmoid; downsample = conv, BN.
_BODY = (("body.0", "conv1", "conv"), ("body.1", "bn1", "bn"), ("body.3", "conv2", "conv"),
         ("body.4", "bn2", "bn"), ("body.6", "conv3", "conv"), ("body.7", "bn3", "bn"))
_SE = (("se.0", "se.fc1", "conv_bias"), ("se.2", "se.fc2", "conv_bias"))
_DOWNSAMPLE = (("downsample.0", "downsample.0", "conv"), ("downsample.1", "downsample.1", "bn"))


def layers(config):
    """``models.mxnet_nets.resnext.features`` against timm's ``ResNet``: Gluon's ``features``
    holds [input BN], conv, BN, ReLU, max pooling, then the stages."""
    first = 1 if config.input_bn else 0
    table = [Layer("features.0", "conv1.bn_data", "bn_fixed_gamma")] if config.input_bn else []
    table += [Layer("features.%d" % first, "conv1.conv" if config.input_bn else "conv1", "conv"),
              Layer("features.%d" % (first + 1), "bn1", "bn")]
    for stage, n_blocks in enumerate(config.layers):
        for b in range(n_blocks):
            units = _BODY + (_SE if config.use_se else ()) + (_DOWNSAMPLE if b == 0 else ())
            gluon, torch = "features.%d.%d." % (first + 4 + stage, b), "layer%d.%d." % (stage + 1, b)
            table += [Layer(gluon + g, torch + t, kind) for g, t, kind in units]
    return table + [Layer(GLUON_CLASSIFIER, "fc", "dense")]


FAMILY = register(Family(
    name="resnext", networks=RESNEXT_CONFIGS, layers=layers,
    imagenet_input=lambda config: RAW_INPUT if config.input_bn else GLUONCV_IMAGENET,
    kind=lambda config: "se_resnext" if config.use_se else "resnext",
    published_layers=mxnet_symbol_layers, published_params=PUBLISHED_M,
    builders={"mxnet": "models.mxnet_nets.resnext", "torch": "models.torch_nets.resnext"}))
