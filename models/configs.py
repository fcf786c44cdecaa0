"""The architectures of the registered networks as plain data, importable without any framework.

A PyTorch process must not import MXNet (the two ship different OpenMP runtimes), and the
GPU machines have no MXNet at all, so the architectures are written here once, and both
sides build from them: the MXNet networks (``models.dpn``, ``models.gluoncv_nets``), the
PyTorch twins (``models.torch_nets``), the names between the two
(``models.weight_convert``) and the specs (``models.specs``).
"""
import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DPNConfig:
    """One DPN architecture, in the paper's notation.

    ``k_r``: bottleneck width of the first stage (doubles every stage); ``groups``: G,
    the cardinality of the grouped 3x3 convolutions; ``k_sec``: blocks per stage;
    ``inc_sec``: dense-path growth per block in each stage; ``first_width``: residual
    width of the first stage (doubles every stage); ``init_channels``/``init_kernel``/
    ``stem_stride``: the stem convolution (the published networks use stride 2; the tiny
    CPU variant uses 4 to leave the 180x180 input resolution fast).
    """

    k_r: int
    groups: int
    k_sec: tuple
    inc_sec: tuple
    init_channels: int
    init_kernel: int = 7
    first_width: int = 256
    stem_stride: int = 2

    def stage_widths(self):
        """(bottleneck width R, residual width bw) for every stage."""
        return [(self.k_r * 2 ** i, self.first_width * 2 ** i) for i in range(len(self.k_sec))]

    def feature_channels(self):
        """Channels of the final feature vector: last residual width + last dense width."""
        return self.stage_widths()[-1][1] + (self.k_sec[-1] + 2) * self.inc_sec[-1]


@dataclass(frozen=True)
class ResNeXtConfig:
    """``layers``: blocks per stage; ``cardinality`` x ``bottleneck_width`` is the '32x4d'
    of the name; ``use_se`` adds squeeze-excitation (ratio 1/16) to every block;
    ``stem_stride`` is 2 in the published networks, 4 in the tiny CPU variants;
    ``input_bn`` puts MXNet's input batch norm ``bn_data`` (fixed gamma) before the stem
    and ``bn_epsilon`` is every batch norm's epsilon. The widths of a network built from
    a file of MXNet's symbolic ResNeXt come from the file (``resnext_widths``)."""

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


DPN_CONFIGS = {
    "dpn68": DPNConfig(k_r=128, groups=32, k_sec=(3, 4, 12, 3), inc_sec=(16, 32, 32, 64),
                       init_channels=10, init_kernel=3, first_width=64),
    "dpn92": DPNConfig(k_r=96, groups=32, k_sec=(3, 4, 20, 3), inc_sec=(16, 32, 24, 128), init_channels=64),
    "dpn98": DPNConfig(k_r=160, groups=40, k_sec=(3, 6, 20, 3), inc_sec=(16, 32, 32, 128), init_channels=96),
    "dpn107": DPNConfig(k_r=200, groups=50, k_sec=(4, 8, 20, 3), inc_sec=(20, 64, 64, 128), init_channels=128),
    "dpn131": DPNConfig(k_r=160, groups=40, k_sec=(4, 8, 28, 3), inc_sec=(16, 32, 32, 128), init_channels=128),
    # CPU-sized variant for demos and tests: one block per stage, narrow streams.
    # Groups of 8 channels: MKL-DNN's grouped convolutions are pathologically slow at 4.
    "dpn_tiny": DPNConfig(k_r=16, groups=2, k_sec=(1, 1, 1, 1), inc_sec=(16, 16, 16, 16),
                          init_channels=16, init_kernel=5, first_width=32, stem_stride=4),
}

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

_FAMILIES = {"dpn": DPN_CONFIGS, "resnext": RESNEXT_CONFIGS, "densenet": DENSENET_CONFIGS}


class ArchitectureError(ValueError):
    """Configuration fields a network does not have, or weight shapes no configuration of
    the network can hold (the message names the layer or field)."""


def network_names():
    """Sorted names of every network (those of ``models.list_models()``)."""
    return sorted(name for configs in _FAMILIES.values() for name in configs)


def architecture(name, overrides=None):
    """``(family, config)`` of network ``name``; family is ``"dpn"``, ``"resnext"`` (SE
    included) or ``"densenet"``. ``overrides``: ``{field: value}`` replacing fields of the
    registered configuration (what ``config_overrides`` gives, a run's metadata records)."""
    for family, configs in _FAMILIES.items():
        if name in configs:
            return family, _overridden(configs[name], overrides or {})
    raise KeyError("unknown model %r; known models: %s" % (name, ", ".join(network_names())))


def _overridden(config, overrides):
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config)})
    if unknown:
        raise ArchitectureError("%s has no field %s" % (type(config).__name__, ", ".join(unknown)))
    return dataclasses.replace(config, **overrides)


def config_overrides(name, config):
    """``{field: value}`` of ``config`` where it differs from network ``name``'s registered
    configuration: the JSON-ready form ``architecture(name, overrides)`` reads back."""
    registered = architecture(name)[1]
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(registered, f.name)}


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
