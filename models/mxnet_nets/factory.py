"""``get_model``: a registered network, initialised, optionally seeded from local weights."""
import mxnet as mx

from models.mxnet_nets.build import build_network
from models.mxnet_nets.weights import file_resnext_widths, load_backbone

# He initialisation, as GluonCV and the DPN authors train from scratch; only the new
# classifier keeps it when weights are loaded.
DEFAULT_INITIALIZER = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)


def get_model(name, classes=5270, pretrained=None, dropout=0.0, ctx=None, from_model=None, initializer=None,
              config_overrides=None):
    """The network ``name`` with a fresh ``classes``-way classifier, initialised on ``ctx``.

    ``ctx``: a context or a list of contexts (default ``mx.cpu()``). ``dropout`` > 0 adds
    dropout between ``net.features`` and ``net.output``.
    ``pretrained``: local weights of this same architecture (a Gluon ``.params`` file, a
    symbolic ``prefix-NNNN.params`` file, or a ``(prefix, epoch)`` pair); every backbone
    parameter must be found and every non-classifier parameter of the file used.
    ``from_model``: weights of another network sharing layers with this one (SE-ResNeXt
    from a ResNeXt checkpoint): the shared parameters are copied, the others (the SE
    layers) keep their fresh initialisation. The file's classifier is never used.
    See ``models.mxnet_nets.weights`` for the accepted names and ``load_backbone`` for a report.
    ``config_overrides``: fields replacing those of the registered architecture
    (``models.families.architecture``). Without them, a ``*_mxnet`` ResNeXt built from a
    file of MXNet's symbolic ResNeXt takes the file's widths (``file_resnext_widths``).
    The network keeps the fields it was built with as ``net.config_overrides``: a run
    records them to build the same network again.
    """
    if pretrained is not None and from_model is not None:
        raise ValueError("give either pretrained or from_model, not both")
    contexts = ctx if isinstance(ctx, (list, tuple)) else [ctx or mx.cpu()]
    weights = pretrained if pretrained is not None else from_model
    if config_overrides is None and weights is not None:
        config_overrides = file_resnext_widths(name, weights)
    net = build_network(name, classes, dropout, config_overrides)
    net.initialize(initializer or DEFAULT_INITIALIZER, ctx=contexts)
    # One small forward pass resolves the shapes GluonCV's blocks leave deferred.
    net(mx.nd.zeros((1, 3, 64, 64), ctx=contexts[0]))
    if pretrained is not None:
        load_backbone(net, pretrained, model=name)
    if from_model is not None:
        load_backbone(net, from_model, model=name, allow_missing=True, allow_unexpected=True)
    return net
