"""A training run's network back from its run folder (``models.runs``), on PyTorch.

Both backends write a run's weights as a Gluon ``.params`` file in structural names, so
any run of a registered network loads here, into the PyTorch twin of its network
(``models.torch_nets.build``), which computes the same function.
"""
from models import runs
from models.torch_nets.build import create_torch_model
from models.torch_nets.weights import gluon_weights_to_state


def load_for_inference(meta):
    """The trained network of the checkpoint whose metadata is `meta` (``models.runs.read_meta``),
    on the CPU, in evaluation mode."""
    if runs.weights_format(meta) != runs.GLUON_PARAMS:
        raise runs.CheckpointError("%s holds %s weights, which the PyTorch backend cannot load"
                                   % (meta["params"], runs.weights_format(meta)))
    net = create_torch_model(meta["model"], int(meta["classes"]), dropout=meta.get("dropout", 0.0),
                             config_overrides=meta.get("config_overrides"))
    net.load_state_dict(gluon_weights_to_state(meta["params"], meta["model"]))
    return net.eval()
