"""PyTorch twins of the registered networks, built from timm's classes.

``create_torch_model(name, classes)`` computes the same function as the Gluon network
``models.get_model(name, classes)`` once given its weights (``models.weight_convert``
maps the names): same layers in the same order, same batch-norm epsilons, paddings,
poolings and activations, the new classifier after global average pooling and optional
dropout. The published networks have exactly the state dicts of timm's ``dpnXX``,
``resnext101_*``, ``seresnext101_*`` and ``densenet161|169``, so timm's and torchvision's
ImageNet files load into them as they are (``load_imagenet_backbone``). Where the Gluon
networks differ from timm's defaults, the twins follow the Gluon networks:

- DPN: ReLU after the final batch norm, as in the DPN authors' networks (timm's ``DPN``
  defaults to ELU there, ``fc_act_layer``).
- SE-ResNeXt: the squeeze-excitation width is exactly channels / 16 (GluonCV's), where
  timm's default rounds it up to a multiple of 8 (only the tiny variant differs).
- Stems that timm's constructors cannot express (the tiny variants' strided stems and
  narrow widths, the input batch norm of MXNet's ResNeXt symbols) are assembled from
  timm's own blocks under the module names timm uses.

This module imports PyTorch and timm: it must never be imported in an MXNet process, and
nothing framework-neutral imports it at module level.
"""
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial

import torch
from timm.layers import BatchNormAct2d, ConvNormAct, SEModule
from timm.models.densenet import DenseNet
from timm.models.dpn import DPN, CatBnAct, DualPathBlock
from timm.models.resnet import Bottleneck, ResNet, make_blocks
from torch import nn

from models.configs import architecture
from models.weight_convert import BN_COUNTER, WeightConversionError, from_torchvision_names

# Every batch norm of the DPN authors' networks (and of timm's DPN blocks, which fix it).
DPN_BN_EPSILON = 1e-3
# timm's ResNet always builds a 64-channel, stride-2 7x7 stem.
TIMM_RESNET_STEM = (64, 2)


class UnsupportedArchitectureError(ValueError):
    """A configuration that timm's classes cannot build."""


def create_torch_model(name, classes, dropout=0.0, device=None, config_overrides=None):
    """The PyTorch twin of registered network ``name`` with a fresh ``classes``-way
    classifier (``dropout`` > 0: dropout between pooled features and classifier), with
    timm's default initialisation, in training mode, on ``device`` (default CPU).
    ``config_overrides``: fields replacing those of the registered architecture, as a run
    records them (``models.get_model``'s ``net.config_overrides``)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError("dropout must be in [0, 1), got %r" % dropout)
    family, config = architecture(name, config_overrides)
    return _BUILDERS[family](config, classes, dropout, device)


def _dpn(config, classes, dropout, device):
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


def _resnext(config, classes, dropout, device):
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


def _densenet(config, classes, dropout, device):
    """timm's ``DenseNet``: BN-ReLU-conv1x1-BN-ReLU-conv3x3 layers concatenated after their
    input, BN-ReLU-conv1x1-avgpool2 transitions, final BN-ReLU, global average pooling."""
    if config.num_init_features != 2 * config.growth_rate:
        raise UnsupportedArchitectureError("timm's DenseNet has 2 x growth rate stem channels, not %d (%r)"
                                           % (config.num_init_features, config))
    return DenseNet(growth_rate=config.growth_rate, block_config=config.block_config, num_classes=classes,
                    bn_size=config.bn_size, drop_rate=dropout, device=device)


_BUILDERS = {"dpn": _dpn, "resnext": _resnext, "densenet": _densenet}


# --- weights ------------------------------------------------------------------------------

def read_state_dict(path):
    """``{name: tensor}`` of a PyTorch weight file: ``.safetensors``, or a plain state dict
    saved by ``torch.save`` (``.pth``/``.pt``/``.bin``, read with ``weights_only``)."""
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightConversionError("%s is not a plain state dict ({name: tensor})" % path)
    return state


def classifier_prefix(model):
    """Module path of ``model``'s classifier plus ``.`` (``fc.``, ``classifier.``)."""
    head = model.get_classifier()
    return next(path for path, module in model.named_modules() if module is head) + "."


@dataclass
class BackboneReport:
    """``loaded``: the model's backbone entries taken from the file; ``classifier``: the
    file's classifier entries, left out (the model keeps its fresh classifier)."""

    loaded: list = field(default_factory=list)
    classifier: list = field(default_factory=list)


def load_imagenet_backbone(model, weights):
    """Copy every backbone entry of ``weights`` (a path or ``{name: tensor}`` in timm's
    names; torchvision's legacy DenseNet names are accepted) into ``model``; the file's
    classifier is left out. Every backbone entry of the model must be in the file with
    its shape (batch-norm counters may be absent), and every non-classifier entry of the
    file must fit the model. Returns a ``BackboneReport``."""
    is_path = isinstance(weights, (str, os.PathLike))
    state = from_torchvision_names(read_state_dict(weights) if is_path else dict(weights))
    head = classifier_prefix(model)
    own = model.state_dict()
    report = BackboneReport(loaded=sorted(k for k in state if k in own and not k.startswith(head)),
                            classifier=sorted(k for k in state if k.startswith(head)))
    # Files saved before PyTorch 0.4.1 (torchvision's DenseNet) have no batch-norm counters.
    missing = sorted(k for k in own if not k.startswith(head) and k not in state and not k.endswith(BN_COUNTER))
    unexpected = sorted(k for k in state if k not in own and not k.startswith(head))
    mismatched = ["%s (file %s, model %s)" % (k, tuple(state[k].shape), tuple(own[k].shape))
                  for k in report.loaded if state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise WeightConversionError("weights do not fit the model: missing %s; unexpected %s; shape mismatches %s"
                                    % (missing[:8], unexpected[:8], mismatched[:8]))
    model.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    return report
