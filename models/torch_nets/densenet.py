"""DenseNet (family ``models.families.densenet``) as timm's ``DenseNet``, whose state dicts
torchvision's ``densenet161`` ImageNet file fills (its legacy names are read by
``models.weight_convert.from_torchvision_names``).
"""
from timm.models.densenet import DenseNet

from models.torch_nets.build import UnsupportedArchitectureError


def build(config, classes, dropout, device):
    """timm's ``DenseNet``: BN-ReLU-conv1x1-BN-ReLU-conv3x3 layers concatenated after their
    input, BN-ReLU-conv1x1-avgpool2 transitions, final BN-ReLU, global average pooling."""
    if config.num_init_features != 2 * config.growth_rate:
        raise UnsupportedArchitectureError("timm's DenseNet has 2 x growth rate stem channels, not %d (%r)"
                                           % (config.num_init_features, config))
    return DenseNet(growth_rate=config.growth_rate, block_config=config.block_config, num_classes=classes,
                    bn_size=config.bn_size, drop_rate=dropout, device=device)
