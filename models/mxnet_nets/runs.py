"""A training run's Gluon network back from its run folder (``models.runs``), with MXNet.

Both backends write a run's weights as a Gluon ``.params`` file in structural names
(``models.runs``), so any run of a registered network loads here: for prediction
(``predict.mxnet_runner``) and for training's checks of a checkpoint
(``train.mxnet_backend``).
"""
import mxnet as mx

from models import runs
from models.mxnet_nets.factory import get_model


def mxnet_message(err):
    """The line of an MXNetError that says what went wrong (its first line is "Traceback ...")."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1].replace("MXNetError: ", "") if lines else type(err).__name__


def check_weights(params):
    """Raise ``models.runs.DamagedCheckpointError`` naming `params` when that ``.params`` file
    cannot be loaded (truncated by a full disk or an interrupted copy). Loads it whole (a
    few seconds for the largest networks)."""
    try:
        mx.nd.load(params)
    except mx.base.MXNetError as err:
        raise runs.DamagedCheckpointError("%s cannot be loaded (%s): the checkpoint is truncated or damaged"
                                          % (params, mxnet_message(err))) from None


def load_for_inference(meta, ctx=None):
    """The trained network of the checkpoint whose metadata is `meta` (``models.runs.read_meta``:
    the epoch's JSON plus ``params``, the weights' path), in float32 on `ctx` (default the
    CPU), not hybridized; float16 checkpoints are cast."""
    ctx = ctx or mx.cpu()
    if runs.weights_format(meta) != runs.GLUON_PARAMS:
        raise runs.CheckpointError("%s holds %s weights, which the MXNet backend cannot load"
                                   % (meta["params"], runs.weights_format(meta)))
    net = get_model(meta["model"], classes=meta["classes"], dropout=meta.get("dropout", 0.0), ctx=ctx,
                    config_overrides=meta.get("config_overrides"))
    try:
        net.load_parameters(meta["params"], ctx=ctx, cast_dtype=True, dtype_source="current")
    except mx.base.MXNetError:
        check_weights(meta["params"])     # names a truncated file
        raise
    return net
