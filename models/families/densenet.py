"""DenseNet-BC (DenseNet-161/169) and a tiny CPU variant.

Gluon: ``models.mxnet_nets.densenet`` (GluonCV's ``DenseNet``, global final pooling);
PyTorch: ``models.torch_nets.densenet`` (timm's ``DenseNet``, whose state dicts torchvision's
``densenet161`` ImageNet file fills).
"""
from dataclasses import dataclass

from models.families import GLUON_CLASSIFIER, Family, Layer, register
from models.families.resnext import GLUONCV_IMAGENET


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


DENSENET_CONFIGS = {
    "densenet161": DenseNetConfig(96, 48, (6, 12, 36, 24)),
    "densenet169": DenseNetConfig(64, 32, (6, 12, 32, 32)),
    # Growth rate 16, not 8: MKL-DNN 1.9.1 fails ("could not construct a sub-memory") on
    # concatenations at offsets that are not multiples of 16.
    "densenet_tiny": DenseNetConfig(32, 16, (2, 2, 2, 2)),
}

# GluonCV's dense layer: HybridConcurrent(Identity, [BN, ReLU, conv1x1, BN, ReLU, conv3x3]).
_DENSE_LAYER = (("1.0", "norm1", "bn"), ("1.2", "conv1", "conv"), ("1.3", "norm2", "bn"), ("1.5", "conv2", "conv"))


def layers(config):
    """GluonCV's ``DenseNet.features`` against timm's ``DenseNet``: conv, BN, ReLU, max
    pooling, then dense blocks with transitions (BN, ReLU, conv, pool) between them, final BN."""
    table = [Layer("features.0", "features.conv0", "conv"), Layer("features.1", "features.norm0", "bn")]
    index = 4
    for block, n_layers in enumerate(config.block_config):
        for i in range(n_layers):
            gluon, torch = "features.%d.%d." % (index, i), "features.denseblock%d.denselayer%d." % (block + 1, i + 1)
            table += [Layer(gluon + g, torch + t, kind) for g, t, kind in _DENSE_LAYER]
        index += 1
        if block != len(config.block_config) - 1:
            table += [Layer("features.%d.0" % index, "features.transition%d.norm" % (block + 1), "bn"),
                      Layer("features.%d.2" % index, "features.transition%d.conv" % (block + 1), "conv")]
            index += 1
    return table + [Layer("features.%d" % index, "features.norm5", "bn"),
                    Layer(GLUON_CLASSIFIER, "classifier", "dense")]


FAMILY = register(Family(
    name="densenet", networks=DENSENET_CONFIGS, imagenet_input=lambda config: GLUONCV_IMAGENET, layers=layers,
    builders={"mxnet": "models.mxnet_nets.densenet", "torch": "models.torch_nets.densenet"},
    published_params={"densenet161": 28.7}))
