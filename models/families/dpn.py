"""Dual Path Networks (Chen et al., 2017): DPN-68/92/98/107/131 and a tiny CPU variant.

Gluon: ``models.mxnet_nets.dpn`` (written here, with the DPN authors' symbol names);
PyTorch: ``models.torch_nets.dpn`` (timm's ``DPN`` blocks, whose state dicts timm's
``dpnXX.mx_in1k`` ImageNet files fill).
"""
from dataclasses import dataclass

from models.families import GLUON_CLASSIFIER, Family, Layer, register

# DPN's own ImageNet input normalisation: mean (124, 117, 104), scale 0.0167.
IMAGENET_INPUT = ((124.0, 117.0, 104.0), 0.0167)


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


def layers(config):
    """``models.mxnet_nets.dpn.DPNFeatures`` against timm's ``DPN`` (``models.torch_nets.dpn``)."""
    table = [Layer("features.stem.0", "features.conv1_1.conv", "conv"),
             Layer("features.stem.1", "features.conv1_1.bn", "bn")]
    block = 0
    for stage, n_blocks in enumerate(config.k_sec):
        for i in range(1, n_blocks + 1):
            units = [("c1x1_a", "c1x1_a"), ("c3x3_b", "c3x3_b"), ("c1x1_c", "c1x1_c")]
            if i == 1:
                units.insert(0, ("projection", "c1x1_w_s1" if stage == 0 else "c1x1_w_s2"))
            gluon, torch = "features.blocks.%d." % block, "features.conv%d_%d." % (stage + 2, i)
            for gluon_unit, torch_unit in units:
                table += [Layer(gluon + gluon_unit + ".bn", torch + torch_unit + ".bn", "bn"),
                          Layer(gluon + gluon_unit + ".conv", torch + torch_unit + ".conv", "conv")]
            block += 1
    return table + [Layer("features.final_bn", "features.conv5_bn_ac.bn", "bn"),
                    Layer(GLUON_CLASSIFIER, "classifier", "dense_as_conv")]


FAMILY = register(Family(
    name="dpn", networks=DPN_CONFIGS, imagenet_input=lambda config: IMAGENET_INPUT, layers=layers,
    builders={"mxnet": "models.mxnet_nets.dpn", "torch": "models.torch_nets.dpn"},
    published_params={"dpn92": 37.7, "dpn98": 61.6, "dpn107": 86.9, "dpn131": 79.3}))
