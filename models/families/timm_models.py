"""Any network of timm by name, on the PyTorch backend: ``timm/<name>`` for every name of ``timm.list_models()``.

The reference's networks are 2017's; timm (``pip install timm``) holds today's
(ConvNeXt, EfficientNetV2, EVA-02, ...). ``--network timm/convnext_small`` trains
``timm.create_model("convnext_small", num_classes=...)`` on the same data path, run folders,
predictor and ensemble as the reference's networks. A name may carry timm's pretrained
tag (``timm/convnext_tiny.fb_in1k``): ``--pretrained timm`` then loads that tag's weights
instead of the architecture's default ones.

Nothing here imports timm: the family is a name pattern and a configuration holding
timm's name; whether the name exists, the input normalisation of its ImageNet weights
(timm's ``pretrained_cfg``: mean and one standard deviation per channel) and its feature
width are asked of the PyTorch side (``models.torch_nets.timm_models``) through the
family's builder, in a process that runs PyTorch. These networks have no Gluon twin: they
exist on the PyTorch backend only (an MXNet command refuses them in one line), and their
runs keep a PyTorch state dict (``models.runs.SAFETENSORS``).
"""
import dataclasses
from dataclasses import dataclass

from models.families import Family, register
from models.runs import SAFETENSORS

PREFIX = "timm/"
# `--pretrained timm`: the network's default ImageNet weights, through timm's own loader.
TIMM_WEIGHTS = "timm"


@dataclass(frozen=True)
class TimmConfig:
    """``name``: timm's model name (with an optional pretrained tag); ``img_size``: (H, W)
    the network is built for, for the networks whose input size is fixed when they are
    built (ViTs, ``pretrained_cfg['fixed_input_size']``; the others take any size and ignore it)."""

    name: str
    img_size: tuple = None

    def feature_channels(self):
        return FAMILY.builder("torch").feature_channels(self)


def sized(config, image_shape):
    """`config` built for inputs of `image_shape` (3, H, W)."""
    return dataclasses.replace(config, img_size=tuple(int(v) for v in image_shape[1:]))


FAMILY = register(Family(
    name="timm", prefix=PREFIX, config_of=TimmConfig,
    imagenet_input=lambda config: FAMILY.builder("torch").imagenet_input(config),
    builders={"torch": "models.torch_nets.timm_models"}, weights_format=SAFETENSORS, default_weights=TIMM_WEIGHTS,
    sized=sized,
    description="any network of timm.list_models() as timm/<name> (e.g. timm/convnext_tiny; a pretrained tag "
                "picks the weights of --pretrained timm: timm/convnext_tiny.fb_in1k)"))
