"""PyTorch weight files: state dicts read from disk, ImageNet backbones loaded into a network,
and a run's weights as a state dict.

A run of a network with a Gluon twin keeps its weights in a Gluon ``.params`` file in
structural names, whichever backend trained it (``models.runs.GLUON_PARAMS``):
`gluon_weights_to_state` reads one with numpy (``models.params_file``) and maps its names
to the PyTorch network's (``models.weight_convert``). A run of a network that exists on
PyTorch only (timm's) keeps its state dict as it is, in a ``.safetensors`` file
(``models.runs.SAFETENSORS``). `run_state` and `write_run_state` read and write either, for
training's starts, resumes and checkpoints and for prediction.
"""
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models import params_file, runs
from models.weight_convert import (BN_COUNTER, WeightConversionError, from_torchvision_names, gluon_to_torch,
                                   torch_to_gluon)

# What reading a damaged weights file of either format raises.
DAMAGED_FILE_ERRORS = (OSError, params_file.ParamsFormatError, SafetensorError)


def read_state_dict(path):
    """``{name: tensor}`` of a PyTorch weight file: ``.safetensors``, or a plain state dict
    saved by ``torch.save`` (``.pth``/``.pt``/``.bin``, read with ``weights_only``). A file
    that is neither (random bytes, a truncated download) is a `WeightConversionError` naming
    it, in one line."""
    path = str(path)
    try:
        if path.endswith(".safetensors"):
            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:   # noqa: BLE001 -- torch.load raises whatever its unpickler meets
        raise WeightConversionError("%s cannot be read as PyTorch weights (%s: %s): expected a .safetensors file or "
                                    "a state dict saved by torch.save, such as timm's and torchvision's"
                                    % (path, type(err).__name__, _first_words(err))) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightConversionError("%s is not a plain state dict ({name: tensor})" % path)
    return state


def _first_words(error):
    """What a loader's error says of the file: the line after ``WeightsUnpickler error:`` of
    ``torch.load``'s several paragraphs (which open with advice about ``weights_only``), else
    its first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line, following in zip(lines, lines[1:]):
        if line.endswith("WeightsUnpickler error:"):
            return following
    return lines[0] if lines else "no message"


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


def gluon_weights_to_state(path, network):
    """The PyTorch network's state dict (tensors) of a Gluon ``.params`` file of `network`
    (structural names: a run's checkpoint, of either backend)."""
    return {name: torch.from_numpy(np.ascontiguousarray(array))
            for name, array in gluon_to_torch(network, params_file.load(path)).items()}


def read_run_file(path, weights_format):
    """The arrays of a run's weights file `path` of `weights_format` (``models.runs``) as
    stored: ``{name: tensor}`` of a ``.safetensors``, ``{Gluon name: array}`` of a ``.params``."""
    if weights_format == runs.SAFETENSORS:
        return load_file(path)
    return params_file.load(path)


def run_state(path, weights_format, network):
    """The PyTorch network's state dict of a run's weights file `path` of `weights_format`
    (``models.runs``) and network `network`."""
    if weights_format == runs.SAFETENSORS:
        return read_run_file(path, weights_format)
    return gluon_weights_to_state(path, network)


def write_run_state(path, weights_format, network, state):
    """Write the state dict `state` of network `network` as a run's weights file of
    `weights_format`: as it is (``.safetensors``), or in Gluon's format and names without
    the batch-norm counters, which Gluon has no place for (the optimizer state keeps them)."""
    if weights_format == runs.SAFETENSORS:
        save_file({name: tensor.detach().cpu().contiguous() for name, tensor in state.items()}, path)
    else:
        params_file.save(path, torch_to_gluon(network, {name: tensor.detach().cpu().numpy()
                                                        for name, tensor in state.items()}))
