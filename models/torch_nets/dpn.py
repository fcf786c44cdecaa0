"""DPN (family ``models.families.dpn``) from timm's ``DPN`` blocks: the state dicts of timm's
``dpnXX`` networks, so the ``dpnXX.mx_in1k`` ImageNet files load as they are.

Where the Gluon network differs from timm's default, this one follows the Gluon network:
ReLU after the final batch norm, as in the DPN authors' networks (timm's ``DPN`` defaults
to ELU there, ``fc_act_layer``), and any ``DPNConfig`` (the tiny variant's strided stem
and narrow widths, which timm's constructor cannot express).
"""
from collections import OrderedDict
from functools import partial

from timm.layers import BatchNormAct2d, ConvNormAct
from timm.models.dpn import DPN, CatBnAct, DualPathBlock
from torch import nn

# Every batch norm of the DPN authors' networks (and of timm's DPN blocks, which fix it).
DPN_BN_EPSILON = 1e-3


def build(config, classes, dropout, device):
    """timm's ``DPN`` with the features assembled by ``_dpn_features`` from the config.

    timm's constructor fixes the stem kernel (3 or 7) and stride (2) and the first
    residual width (64 or 256), so it is only run as a skeleton on the meta device
    (no memory, no initialisation) for the head and the attributes timm's methods use.
    """
    model = DPN(k_sec=config.k_sec, inc_sec=config.inc_sec, k_r=config.k_r, groups=config.groups,
                drop_rate=dropout, device="meta")
    model.features, model.feature_info = _dpn_features(config, device)
    model.num_features = model.head_hidden_size = config.feature_channels()
    model.reset_classifier(classes)
    return model


def _dpn_features(config, device):
    """``(nn.Sequential, feature_info)``: the layout and module names of timm's
    ``DPN.features`` (``conv1_1``, ``conv1_pool``, ``conv{stage}_{block}``, ``conv5_bn_ac``)
    for any ``DPNConfig``: stem conv with padding kernel // 2 and its own stride, BN-ReLU,
    3x3/2 max pooling, dual path blocks ('proj' first, 'down' first in later stages),
    final BN-ReLU over the concatenated paths."""
    blocks = OrderedDict()
    blocks["conv1_1"] = ConvNormAct(3, config.init_channels, config.init_kernel, stride=config.stem_stride,
                                    padding=config.init_kernel // 2,
                                    norm_layer=partial(BatchNormAct2d, eps=DPN_BN_EPSILON), device=device)
    blocks["conv1_pool"] = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    feature_info = [dict(num_chs=config.init_channels, reduction=config.stem_stride, module="features.conv1_1")]
    in_chs = config.init_channels
    for stage, ((bottleneck, width), n_blocks, inc) in enumerate(
            zip(config.stage_widths(), config.k_sec, config.inc_sec)):
        for i in range(1, n_blocks + 1):
            kind = "normal" if i > 1 else ("proj" if stage == 0 else "down")
            blocks["conv%d_%d" % (stage + 2, i)] = DualPathBlock(in_chs, bottleneck, bottleneck, width, inc,
                                                                 config.groups, kind, device=device)
            in_chs = width + (i + 2) * inc
        feature_info.append(dict(num_chs=in_chs, reduction=config.stem_stride * 2 ** (stage + 1),
                                 module="features.conv%d_%d" % (stage + 2, n_blocks)))
    blocks["conv5_bn_ac"] = CatBnAct(in_chs, norm_layer=partial(BatchNormAct2d, act_layer=nn.ReLU, inplace=False),
                                     device=device)
    return nn.Sequential(blocks), feature_info
