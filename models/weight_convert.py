"""Parameter names between each Gluon network and its PyTorch twin, both ways, in numpy.

The Gluon side uses the structural names that Gluon's ``save_parameters`` writes and
``load_parameters`` reads (``features.4.0.body.0.weight``: a training run's
``epoch-NNNN.params``); the PyTorch side uses the state-dict names of the twin that
``models.torch_nets.create_torch_model`` builds, which for the published networks are
those of timm's ImageNet files. Nothing here imports a framework: a PyTorch process reads
a Gluon file with ``models.params_file`` and converts it here, and an MXNet-free,
torch-free process can convert safetensors files (``python -m models.torch_nets.convert_weights``).

A network is described as a list of layers ``(Gluon block path, twin module path,
kind)`` (``models.families.Layer``), which its family generates from its configuration
(``models.families``: each family declares its table beside its architectures); each
kind says how the parameters of one layer correspond:

- ``conv``: ``weight``; ``conv_bias``: ``weight``, ``bias`` (the SE convolutions);
- ``bn``: Gluon ``gamma``/``beta``/``running_mean``/``running_var`` are PyTorch
  ``weight``/``bias``/``running_mean``/``running_var``; PyTorch's update counter
  ``num_batches_tracked`` has no Gluon counterpart (written as 0, ignored on the way back);
- ``bn_fixed_gamma``: MXNet's ``fix_gamma`` batch norm (the ``*_mxnet`` input batch norm):
  MXNet ignores the stored gamma and uses 1, so 1 is written on both sides;
- ``dense``: ``weight``, ``bias``; ``dense_as_conv``: timm's DPN classifier is a 1x1
  convolution, its weight ``(classes, C, 1, 1)`` is the Dense weight ``(classes, C)``.
"""
import re
from dataclasses import dataclass

import numpy as np

from models.families import layer_table

# kind -> ((Gluon parameter, PyTorch parameter), ...)
_LAYER_PARAMS = {
    "conv": (("weight", "weight"),),
    "conv_bias": (("weight", "weight"), ("bias", "bias")),
    "bn": (("gamma", "weight"), ("beta", "bias"), ("running_mean", "running_mean"), ("running_var", "running_var")),
    "dense": (("weight", "weight"), ("bias", "bias")),
}
_LAYER_PARAMS["bn_fixed_gamma"] = _LAYER_PARAMS["bn"]
_LAYER_PARAMS["dense_as_conv"] = _LAYER_PARAMS["dense"]
BN_COUNTER = "num_batches_tracked"


class WeightConversionError(ValueError):
    """Weights whose names or shapes do not fit the network they are converted for."""


@dataclass(frozen=True)
class ParamPair:
    """One parameter: Gluon name (None: PyTorch only), PyTorch name, layer kind."""

    gluon: str
    torch: str
    kind: str


def parameter_pairs(name):
    """Every parameter of network ``name`` as a ``ParamPair``, in layer order."""
    pairs = []
    for layer in layer_table(name):
        pairs += [ParamPair("%s.%s" % (layer.gluon, g), "%s.%s" % (layer.torch, t), layer.kind)
                  for g, t in _LAYER_PARAMS[layer.kind]]
        if layer.kind.startswith("bn"):
            pairs.append(ParamPair(None, "%s.%s" % (layer.torch, BN_COUNTER), layer.kind))
    return pairs


def _check_names(name, side, given, expected, optional=()):
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected) - set(optional))
    if missing or unexpected:
        raise WeightConversionError("%s weights do not fit %s: %d missing %s, %d unexpected %s"
                                    % (side, name, len(missing), _abbreviate(missing), len(unexpected),
                                       _abbreviate(unexpected)))


def _abbreviate(names, limit=8):
    return "[%s%s]" % (", ".join(names[:limit]), ", ..." if len(names) > limit else "")


def _to_torch(pair, array):
    if pair.gluon is None:
        return np.array(0, np.int64)
    if pair.kind == "bn_fixed_gamma" and pair.gluon.endswith(".gamma"):
        return np.ones_like(array)
    if pair.kind == "dense_as_conv" and pair.gluon.endswith(".weight"):
        return array.reshape(array.shape + (1, 1))
    return array


def _to_gluon(pair, array):
    if pair.kind == "bn_fixed_gamma" and pair.gluon.endswith(".gamma"):
        return np.ones_like(array)
    if pair.kind == "dense_as_conv" and pair.gluon.endswith(".weight"):
        if array.shape[2:] != (1, 1):
            raise WeightConversionError("%s: a 1x1 convolution weight was expected, not shape %s"
                                        % (pair.torch, array.shape))
        return array.reshape(array.shape[:2])
    return array


def gluon_to_torch(name, params):
    """The twin's state dict (``{name: numpy array}``, PyTorch names) of the Gluon
    parameters ``params`` (structural names, as in a ``.params`` file) of network ``name``.
    Every parameter must be present and no other."""
    pairs = parameter_pairs(name)
    _check_names(name, "Gluon", params, [p.gluon for p in pairs if p.gluon is not None])
    return {p.torch: _to_torch(p, None if p.gluon is None else np.asarray(params[p.gluon])) for p in pairs}


def torch_to_gluon(name, state):
    """The Gluon parameters (structural names) of network ``name`` from a state dict of
    its twin or a timm ImageNet file (``{name: numpy array}``; ``num_batches_tracked``
    entries may be there or not). Every parameter must be present and no other."""
    pairs = parameter_pairs(name)
    counters = [p.torch for p in pairs if p.gluon is None]
    named = [p for p in pairs if p.gluon is not None]
    _check_names(name, "PyTorch", state, [p.torch for p in named], optional=counters)
    return {p.gluon: _to_gluon(p, np.asarray(state[p.torch])) for p in named}


# torchvision's DenseNet files name the layers of a dense layer ``norm.1``, ``conv.2``...
# (an older torchvision layout), timm and today's torchvision ``norm1``, ``conv2``.
_TORCHVISION_DENSE_LAYER = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.[a-z_]+)$")


def from_torchvision_names(state):
    """``state`` with torchvision's legacy DenseNet names (``...denselayer1.norm.1.weight``)
    renamed as timm names them (``...denselayer1.norm1.weight``); other names unchanged."""
    return {_TORCHVISION_DENSE_LAYER.sub(r"\1\2", key): value for key, value in state.items()}
