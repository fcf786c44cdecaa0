"""A training run's network back from its run folder (``models.runs``), on PyTorch.

Either format of a run's weights loads here (``models.torch_nets.weights.run_state``): a
Gluon ``.params`` file in structural names, which both backends write for the networks
with a Gluon twin, into the PyTorch twin of its network (``models.torch_nets.build``),
which computes the same function; a ``.safetensors`` state dict, which the PyTorch backend
writes for timm's networks, as it is.
"""
from models import runs
from models.torch_nets.build import create_torch_model
from models.torch_nets.weights import run_state


def load_for_inference(meta):
    """The trained network of the checkpoint whose metadata is `meta` (``models.runs.read_meta``;
    its weights are ``meta["params"]``), on the CPU, in evaluation mode."""
    net = create_torch_model(meta["model"], int(meta["classes"]), dropout=meta.get("dropout", 0.0),
                             config_overrides=meta.get("config_overrides"))
    net.load_state_dict(run_state(meta["params"], runs.weights_format(meta), meta["model"]))
    return net.eval()
