"""The architectures of the registered networks as plain data, importable without any framework.

A PyTorch process must not import MXNet (the two ship different OpenMP runtimes), and the
GPU machines have no MXNet at all, so ``models.torch_nets`` (the PyTorch twins) and
``models.weight_convert`` (names between the two) read the architectures from here. The
MXNet side (``models.dpn``, ``models.gluoncv_nets``) holds the same configurations;
``tests/test_configs.py`` checks that both agree, network by network, field by field.
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
    CPU variant uses 4).
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
    and ``bn_epsilon`` is every batch norm's epsilon."""

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
    "densenet_tiny": DenseNetConfig(32, 16, (2, 2, 2, 2)),
}

_FAMILIES = {"dpn": DPN_CONFIGS, "resnext": RESNEXT_CONFIGS, "densenet": DENSENET_CONFIGS}


def network_names():
    """Sorted names of every network (those of ``models.list_models()``)."""
    return sorted(name for configs in _FAMILIES.values() for name in configs)


def architecture(name):
    """``(family, config)`` of network ``name``; family is ``"dpn"``, ``"resnext"`` (SE
    included) or ``"densenet"``."""
    for family, configs in _FAMILIES.items():
        if name in configs:
            return family, configs[name]
    raise KeyError("unknown model %r; known models: %s" % (name, ", ".join(network_names())))
