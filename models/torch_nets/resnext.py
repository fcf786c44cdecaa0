"""(SE-)ResNeXt (family ``models.families.resnext``) from timm's ``ResNet`` of ``Bottleneck``
blocks: the state dicts of timm's ``resnext101_*`` / ``seresnext101_*``, so their
``*.gluon_in1k`` ImageNet files load as they are.

Where the Gluon network differs from timm's defaults, this one follows the Gluon network:
the squeeze-excitation width is exactly channels / 16 (GluonCV's), where timm's default
rounds it up to a multiple of 8 (only the tiny variant differs); stems timm's constructor
cannot express (the tiny variants' strided stem and narrow widths, the input batch norm of
MXNet's ResNeXt symbols) are assembled from timm's own blocks under the names timm uses.
"""
from collections import OrderedDict
from functools import partial

from timm.layers import SEModule
from timm.models.resnet import Bottleneck, ResNet, make_blocks
from torch import nn

# timm's ResNet always builds a 64-channel, stride-2 7x7 stem.
TIMM_RESNET_STEM = (64, 2)


def build(config, classes, dropout, device):
    """timm's ``ResNet`` with ``Bottleneck`` blocks: stride on the grouped 3x3, projection
    in each stage's first block, SE (if any) after the third BN, before the sum."""
    norm = partial(nn.BatchNorm2d, eps=config.bn_epsilon)
    attn = dict(attn_layer=partial(SEModule, rd_divisor=1)) if config.use_se else {}
    model = ResNet(Bottleneck, config.layers, num_classes=classes, cardinality=config.cardinality,
                   base_width=config.bottleneck_width, channels=config.stage_channels(), norm_layer=norm,
                   drop_rate=dropout, block_args=attn, device=device)
    if (config.stem_channels, config.stem_stride) != TIMM_RESNET_STEM:
        _replace_resnet_stem(model, config, norm, attn, device)
    if config.input_bn:
        model.conv1 = nn.Sequential(OrderedDict(bn_data=_fixed_gamma_batch_norm(3, config.bn_epsilon, device),
                                                conv=model.conv1))
    return model


def _replace_resnet_stem(model, config, norm, attn, device):
    """A 7x7 stem of ``config.stem_channels`` at ``config.stem_stride`` (padding 3), and the
    stages rebuilt by timm's ``make_blocks`` for that input width, as ``ResNet`` builds them."""
    model.conv1 = nn.Conv2d(3, config.stem_channels, kernel_size=7, stride=config.stem_stride, padding=3,
                            bias=False, device=device)
    model.bn1 = norm(config.stem_channels, device=device)
    stages, stage_info = make_blocks((Bottleneck,) * len(config.layers), config.stage_channels(), config.layers,
                                     config.stem_channels, cardinality=config.cardinality,
                                     base_width=config.bottleneck_width, norm_layer=norm, act_layer=nn.ReLU,
                                     device=device, **attn)
    for stage_name, stage in stages:
        setattr(model, stage_name, stage)
    scale = config.stem_stride // TIMM_RESNET_STEM[1]
    model.feature_info = [dict(info, reduction=info["reduction"] * scale)
                          for info in [dict(model.feature_info[0], num_chs=config.stem_channels)] + stage_info]
    model.init_weights()


def _fixed_gamma_batch_norm(channels, eps, device):
    """MXNet's ``BatchNorm(fix_gamma=True)`` (Gluon ``scale=False``): gamma is 1 and not trained."""
    norm = nn.BatchNorm2d(channels, eps=eps, device=device)
    norm.weight.requires_grad_(False)
    return norm
