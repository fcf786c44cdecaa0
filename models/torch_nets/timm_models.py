"""timm's networks by name (``timm/<name>``, ``models.families.timm_models``), built and
described by timm itself, and their ImageNet weights as timm users get them.

`build` is ``timm.create_model(name, num_classes=classes, drop_rate=dropout)`` (``img_size``
too for the networks whose input size is fixed when built); `imagenet_input` and
`feature_channels` read timm's ``pretrained_cfg`` and the built network, for the family's
spec (``models.specs``); `imagenet_state` gives the weights of ``--pretrained timm``
through timm's own loader, which downloads them into the Hugging Face cache (``HF_HOME``,
default ``~/.cache/huggingface``) on a machine with internet and reads them from it on one
without (``HF_HUB_OFFLINE=1`` skips the attempt); a missing file is one line saying which
file to put where.
"""
import os

import huggingface_hub
import timm
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from timm.models import get_pretrained_cfg

from models.runs import CheckpointError
from models.torch_nets.build import UnsupportedArchitectureError

# timm's file name for the weights in a Hugging Face repository (timm.models._hub).
HUB_WEIGHTS_FILE = "model.safetensors"


def pretrained_cfg(config):
    """timm's ``pretrained_cfg`` (a dict) of the network of `config`; its name checked."""
    if not timm.is_model(config.name):
        raise UnsupportedArchitectureError("timm %s has no network %r (timm.list_models() lists them)"
                                           % (timm.__version__, config.name))
    return get_pretrained_cfg(config.name).to_dict()


def _size_arguments(config):
    """``img_size`` for a network whose input size is fixed when it is built, else nothing."""
    if config.img_size and pretrained_cfg(config).get("fixed_input_size"):
        return {"img_size": tuple(config.img_size)}
    return {}


def build(config, classes, dropout, device, pretrained=False):
    """``timm.create_model`` of `config` with a `classes`-way classifier after dropout
    `dropout`, on `device` (default CPU; ``meta``: a skeleton without storage); with
    `pretrained`, timm's loader fills it with its default ImageNet weights (the classifier
    left out when `classes` differ from theirs)."""
    kwargs = _size_arguments(config)
    with torch.device(device or "cpu"):
        return timm.create_model(config.name, pretrained=pretrained, num_classes=classes, drop_rate=dropout, **kwargs)


def imagenet_input(config):
    """``(mean, scale)`` of the input of the network's ImageNet weights, in the pipeline's
    0-255 terms (``(pixel - mean) * scale``): timm's mean x 255 and 1 / (255 x std), one
    scale per channel unless the channels share one."""
    cfg = pretrained_cfg(config)
    mean = tuple(255.0 * m for m in cfg["mean"])
    scales = tuple(1.0 / (255.0 * s) for s in cfg["std"])
    return mean, scales[0] if len(set(scales)) == 1 else scales


def feature_channels(config):
    """Width of the features the classifier reads (timm's ``num_features``)."""
    return build(config, 1000, 0.0, "meta").num_features


def hub_file(config):
    """``(repository, file)`` on the Hugging Face hub of the network's default ImageNet
    weights (those of its tag when the name carries one), or None when timm has none there."""
    cfg = pretrained_cfg(config)
    if not cfg.get("hf_hub_id"):
        return None
    return cfg["hf_hub_id"], cfg.get("hf_hub_filename") or HUB_WEIGHTS_FILE


def missing_weights_message(config, repository, filename):
    """The line saying which file ``--pretrained timm`` needs and where the cache wants it."""
    folder = os.path.join(huggingface_hub.constants.HF_HUB_CACHE, "models--" + repository.replace("/", "--"))
    return ("--pretrained timm: timm/%s's ImageNet weights (Hugging Face %s, %s) are neither in the cache nor to be "
            "downloaded here: put the file in %s/snapshots/REVISION/ and REVISION in %s/refs/main, or give it with "
            "--pretrained FILE" % (config.name, repository, filename, folder, folder))


def imagenet_state(config, classes):
    """The state dict (timm's names) of the network with timm's default ImageNet weights
    and a fresh `classes`-way classifier, loaded by timm's own loader from the Hugging
    Face cache (downloaded into it where the internet can be reached)."""
    found = hub_file(config)
    if found is None:
        raise CheckpointError("--pretrained timm: timm has no ImageNet weights of %s on the Hugging Face hub; give "
                              "a file with --pretrained FILE" % config.name)
    try:
        return build(config, classes, 0.0, None, pretrained=True).state_dict()
    except LocalEntryNotFoundError:
        raise CheckpointError(missing_weights_message(config, *found)) from None
