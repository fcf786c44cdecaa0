"""Dual Path Networks (Chen et al., 2017, arXiv:1707.01629) as Gluon HybridBlocks.

GluonCV 0.10 ships no DPN, so the architecture is written here, following the public
MXNet symbol definitions of the paper's authors (github.com/cypw/DPNs). The Gluon block
prefixes are chosen so that every parameter name, once the network's own prefix is
stripped, is the name used in the authors' symbolic checkpoints
(``conv1_x_1__conv_weight``, ``conv1_x_1__relu-sp__bn_gamma``, ``conv2_x__1_c1x1-a__conv_weight``,
``fc6_weight``, ...) up to two spellings that ``models.mxnet_nets.weights`` translates: the
batch-norm running statistics (Gluon ``running_mean``/``running_var``, symbolic
``moving_mean``/``moving_var``) and the batch norm of a block unit, which the authors'
``BN_AC_Conv`` names twice over (``conv2_x__1_c1x1-a__bn__bn_gamma`` for this network's
``conv2_x__1_c1x1-a__bn_gamma``). Files exported from this network keep the single form.

A dual path block keeps two streams: a residual stream of fixed width ``bw`` (summed,
as in ResNeXt) and a densely connected stream that grows by ``inc`` channels per block
(concatenated, as in DenseNet). Each block reads the concatenation of both streams.

Differences from the published symbols, both needed at 180x180 input: the final 7x7
average pooling is a global average pooling, and the network ends at the flattened
feature vector (the classifier is added by ``models.mxnet_nets.classifier.Classifier``).
"""
from mxnet.gluon import nn

# The published symbols use mx.sym.BatchNorm's default epsilon, not Gluon's 1e-5.
BN_EPSILON = 1e-3


class BNReLUConv(nn.HybridBlock):
    """Pre-activation unit BN -> ReLU -> Conv (``BN_AC_Conv`` of the DPN symbols).

    Its prefix is the unit's symbol name plus ``__``; children are ``bn_`` and ``conv_``,
    giving ``<unit>__bn_gamma`` (the authors' files: ``<unit>__bn__bn_gamma``) and
    ``<unit>__conv_weight``.
    """

    def __init__(self, in_channels, channels, kernel_size, strides=1, groups=1, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.bn = nn.BatchNorm(epsilon=BN_EPSILON, in_channels=in_channels, prefix="bn_")
            self.conv = nn.Conv2D(channels, kernel_size, strides=strides, padding=kernel_size // 2,
                                  groups=groups, use_bias=False, in_channels=in_channels, prefix="conv_")

    def hybrid_forward(self, F, x):
        return self.conv(F.Activation(self.bn(x), act_type="relu"))


class DualPathBlock(nn.HybridBlock):
    """One dual path block (``DualPathFactory`` of the DPN symbols).

    ``kind`` is ``"proj"`` (first block of the first stage: projects the input to both
    streams), ``"down"`` (first block of later stages: projects with stride 2) or
    ``"normal"`` (identity on both streams). Called with one input (the stem output, for
    the first block) or with the (residual, dense) pair; returns the new pair.
    """

    def __init__(self, in_channels, bottleneck, width, inc, groups, kind, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("proj", "down", "normal"):
            raise ValueError("unknown dual path block kind %r" % kind)
        self.width = width
        self.inc = inc
        stride = 2 if kind == "down" else 1
        with self.name_scope():
            self.projection = None
            if kind != "normal":
                self.projection = BNReLUConv(in_channels, width + 2 * inc, 1, strides=stride,
                                             prefix="c1x1-w(s/%d)__" % stride)
            self.c1x1_a = BNReLUConv(in_channels, bottleneck, 1, prefix="c1x1-a__")
            self.c3x3_b = BNReLUConv(bottleneck, bottleneck, 3, strides=stride, groups=groups, prefix="c3x3-b__")
            self.c1x1_c = BNReLUConv(bottleneck, width + inc, 1, prefix="c1x1-c__")

    def hybrid_forward(self, F, residual, dense=None):
        x = residual if dense is None else F.concat(residual, dense, dim=1)
        if self.projection is not None:
            projected = self.projection(x)
            residual = F.slice_axis(projected, axis=1, begin=0, end=self.width)
            dense = F.slice_axis(projected, axis=1, begin=self.width, end=self.width + 2 * self.inc)
        out = self.c1x1_c(self.c3x3_b(self.c1x1_a(x)))
        out_residual = F.slice_axis(out, axis=1, begin=0, end=self.width)
        out_dense = F.slice_axis(out, axis=1, begin=self.width, end=self.width + self.inc)
        return residual + out_residual, F.concat(dense, out_dense, dim=1)


class DPNFeatures(nn.HybridBlock):
    """DPN backbone: stem, the four stages of dual path blocks, final BN-ReLU, global
    average pooling and flatten. Output: (N, ``config.feature_channels()``).

    Built with prefix '' inside the classifier's scope, so parameter names are the
    network prefix followed by the published symbol names.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.stem = nn.HybridSequential(prefix="")
            self.stem.add(nn.Conv2D(config.init_channels, config.init_kernel, strides=config.stem_stride,
                                    padding=config.init_kernel // 2, use_bias=False, in_channels=3,
                                    prefix="conv1_x_1__conv_"),
                          nn.BatchNorm(epsilon=BN_EPSILON, in_channels=config.init_channels,
                                       prefix="conv1_x_1__relu-sp__bn_"),
                          nn.Activation("relu"),
                          nn.MaxPool2D(pool_size=3, strides=2, padding=1))
            self.blocks = nn.HybridSequential(prefix="")
            channels = config.init_channels
            for stage, ((bottleneck, width), n_blocks, inc) in enumerate(
                    zip(config.stage_widths(), config.k_sec, config.inc_sec)):
                for i in range(1, n_blocks + 1):
                    kind = "normal" if i > 1 else ("proj" if stage == 0 else "down")
                    self.blocks.add(DualPathBlock(channels, bottleneck, width, inc, config.groups, kind,
                                                  prefix="conv%d_x__%d_" % (stage + 2, i)))
                    channels = width + (i + 2) * inc
            self.final_bn = nn.BatchNorm(epsilon=BN_EPSILON, in_channels=channels,
                                         prefix="conv5_x_x__relu-sp__bn_")
            self.pool = nn.GlobalAvgPool2D()
            self.flatten = nn.Flatten(prefix="flatten_")

    def hybrid_forward(self, F, x):
        pair = self.blocks[0](self.stem(x))
        for i in range(1, len(self.blocks)):
            pair = self.blocks[i](*pair)
        x = F.Activation(self.final_bn(F.concat(*pair, dim=1)), act_type="relu")
        return self.flatten(self.pool(x))


def features(config):
    """The feature extractor of a DPN (``models.families.dpn.DPNConfig``)."""
    return DPNFeatures(config, prefix="")


def classifier_prefix(config):
    """``fc6_``, the classifier's name in the DPN authors' checkpoints."""
    return "fc6_"
