"""PyTorch twins of the registered networks, built from timm's classes.

``create_torch_model(name, classes)`` computes the same function as the Gluon network
``models.mxnet_nets.get_model(name, classes)`` once given its weights (``models.weight_convert``
maps the names): same layers in the same order, same batch-norm epsilons, paddings,
poolings and activations, the new classifier after global average pooling and optional
dropout. The published networks have exactly the state dicts of timm's ``dpnXX``,
``resnext101_*``, ``seresnext101_*`` and ``densenet161|169``, so timm's and torchvision's
ImageNet files load into them as they are (``models.torch_nets.weights.load_imagenet_backbone``). Where the Gluon
networks differ from timm's defaults, the twins follow the Gluon networks (each family's
module here says where).

Each family (``models.families``) names the module of this package that builds it: its
``build(config, classes, dropout, device)`` gives the whole network with a fresh classifier.
This package imports PyTorch and timm: it must never be imported in an MXNet process.
"""
from models import families

BACKEND = "torch"


class UnsupportedArchitectureError(ValueError):
    """A configuration that timm's classes cannot build."""


def create_torch_model(name, classes, dropout=0.0, device=None, config_overrides=None):
    """The PyTorch twin of registered network ``name`` with a fresh ``classes``-way
    classifier (``dropout`` > 0: dropout between pooled features and classifier), initialised
    as the Gluon network is (``models.torch_nets.initialise``), in training mode, on
    ``device`` (default CPU). ``config_overrides``: fields replacing those of the registered
    architecture, as a run records them (``models.mxnet_nets.get_model``'s
    ``net.config_overrides``)."""
    # Imported here, as the family builders are: this module loads no PyTorch, so that
    # models.torch_nets.convert_weights converts .safetensors files with numpy alone.
    from models.torch_nets.initialise import initialise_as_gluon
    if not 0.0 <= dropout < 1.0:
        raise ValueError("dropout must be in [0, 1), got %r" % dropout)
    _, config = families.architecture(name, config_overrides)
    return initialise_as_gluon(families.family_of(name).builder(BACKEND).build(config, classes, dropout, device))


def count_parameters(name, classes=1000):
    """Trainable parameters of ``name`` (weights, biases, BN gamma/beta; not BN statistics
    nor the fixed gammas of MXNet's ``fix_gamma`` batch norms), built on the meta device."""
    net = create_torch_model(name, classes, device="meta")
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
