"""Importing backbone weights from local files into a Gluon network.

Nothing can be downloaded, so ImageNet (or earlier fine-tuned) weights come from files in
one of two forms:

- Gluon ``.params`` (``save_parameters``, as in GluonCV's model zoo): keys are structural
  paths such as ``features.4.0.body.0.weight``.
- MXNet symbolic checkpoints ``prefix-NNNN.params`` (beside ``prefix-symbol.json``, which
  is not needed): keys are ``arg:<name>`` / ``aux:<name>`` with symbol names, either
  written by ``HybridBlock.export`` / ``models.mxnet_nets.export_symbolic`` from a network of this
  registry (``dpn92_...``, ``resnext101_64x4d_stage1_conv0_weight``), or published ones
  without a network prefix:

  * the DPN authors' checkpoints (``dpn92-0000.params``): the DPN blocks here carry the
    authors' names (``conv1_x_1__conv_weight``, ``conv2_x__1_c1x1-a__conv_weight``,
    ``fc6_weight``) except that the authors' ``BN_AC_Conv`` names the batch norm of a
    block unit twice over: ``conv2_x__1_c1x1-a__bn__bn_gamma`` for this network's
    ``conv2_x__1_c1x1-a__bn_gamma`` (the stem's and final ones, ``conv1_x_1__relu-sp__bn_*``
    and ``conv5_x_x__relu-sp__bn_*``, are named once);
  * MXNet's model-zoo ResNeXt checkpoints (``imagenet1k-resnext-101-0000.params``):
    ``bn_data``, ``conv0``, ``stage1_unit1_conv1``, ..., ``fc1``; they load into the
    ``*_mxnet`` ResNeXts, whose layers ``models.families.published_layers`` names so.

  Symbolic batch-norm statistics are ``moving_mean``/``moving_var`` where Gluon says
  ``running_mean``/``running_var``. A registry model name before the first parameter
  name tells which architecture wrote the file; its names are translated to structural
  paths through that architecture, which lets a file exported from one network seed
  another (SE-ResNeXt from ResNeXt: GluonCV numbers layers differently once SE layers
  are present, the structural paths stay the same).

Only the backbone (``net.features``) is loaded. The file's classifier (structural path
``output.*``) is dropped and reported: the target keeps its freshly initialised
``output`` for its own number of classes.
"""
import logging
import os
import re
from dataclasses import dataclass, field

import mxnet as mx
from mxnet.gluon import nn

from models.families import architecture, network_names, published_layers
from models.families.resnext import resnext_widths
from models.mxnet_nets.build import build_network

log = logging.getLogger(__name__)

CLASSIFIER_PATH = "output."
# Published spellings -> this project's: symbolic batch-norm statistics, and the DPN
# authors' doubly named unit batch norms (see the module docstring).
_NAME_ALIASES = ((re.compile(r"_moving_(mean|var)$"), r"_running_\1"),
                 (re.compile(r"__bn__bn_(gamma|beta|running_mean|running_var)$"), r"__bn_\1"))


class WeightImportError(ValueError):
    """The weight file does not fit the network (missing or unexpected parameters)."""


class WeightShapeError(WeightImportError):
    """A parameter present in both the file and the network has different shapes."""


@dataclass
class LoadReport:
    """How a weight file matches a network. ``loaded``: backbone parameters found in the
    file (and copied, once ``load_backbone`` returns); ``missing``: backbone parameters
    not in the file. Both are the network's structural paths; ``unexpected`` (file
    parameters that fit nothing) and ``classifier`` (the file's classifier, dropped) are
    the file's own names."""

    path: str
    source_format: str  # "gluon" or "symbolic"
    naming: str  # "structural", "published" or the registry model whose names the file uses
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    classifier: list = field(default_factory=list)

    def summary(self):
        lines = ["%d of %d backbone parameters found in %s (%s checkpoint, %s names)"
                 % (len(self.loaded), len(self.loaded) + len(self.missing), self.path, self.source_format,
                    self.naming)]
        for label, names in (("classifier dropped", self.classifier), ("missing", self.missing),
                             ("unexpected", self.unexpected)):
            if names:
                lines.append("%s (%d): %s" % (label, len(names), _abbreviate(names)))
        return "\n".join(lines)


def _abbreviate(names, limit=12):
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else "%s, ... (%d more)" % (shown, len(names) - limit)


def resolve_weights_path(weights, epoch=None):
    """The ``.params`` file meant by ``weights``: a path, a ``(prefix, epoch)`` pair or a
    symbolic-checkpoint prefix with ``epoch``."""
    if isinstance(weights, (tuple, list)):
        weights, epoch = weights
    path = str(weights) if epoch is None else "%s-%04d.params" % (weights, int(epoch))
    if not os.path.isfile(path):
        raise FileNotFoundError("weight file not found: %s" % path)
    return path


def read_weights(path):
    """``({name: NDArray}, format)``; symbolic names lose their ``arg:``/``aux:`` tag."""
    arrays = mx.nd.load(path)
    if not isinstance(arrays, dict) or not arrays:
        raise WeightImportError("%s holds no named parameters" % path)
    tagged = [name.startswith(("arg:", "aux:")) for name in arrays]
    if any(tagged) and not all(tagged):
        raise WeightImportError("%s mixes arg:/aux: names with untagged ones" % path)
    if all(tagged):
        return {name[4:]: array for name, array in arrays.items()}, "symbolic"
    return dict(arrays), "gluon"


def structural_names(net):
    """``{structural path: Parameter}``, the keys ``save_parameters`` writes."""
    return net._collect_params_with_prefix()  # pylint: disable=protected-access


def symbol_name_table(net):
    """``{symbol name without the network prefix: structural path}`` for ``net``."""
    return {param.name[len(net.prefix):]: path for path, param in structural_names(net).items()}


def _canonical_symbol_name(name):
    for pattern, replacement in _NAME_ALIASES:
        name = pattern.sub(replacement, name)
    return name


def published_name_table(net, model):
    """``{published parameter name, canonical: structural path}`` for registry network
    ``model``: its own symbol names without the network prefix (the DPN authors' names)
    and, where the registry names its layers otherwise (``published_layers``: MXNet's
    model-zoo ResNeXt), those layers' parameters (``stage1_unit1_bn1_running_mean``)."""
    table = symbol_name_table(net)
    layers = published_layers(model)
    if layers:
        layer_name = {path: name for name, path in layers.items()}
        for path in structural_names(net):
            layer, _, param = path.rpartition(".")
            if layer in layer_name:
                table["%s_%s" % (layer_name[layer], param)] = path
    return table


def fixed_gammas(net):
    """Structural paths of the gammas no computation reads: those of batch norms built with
    ``scale=False`` (MXNet's ``fix_gamma``, e.g. ``bn_data``). A file may omit them."""
    fixed = set()

    def collect(block):
        if isinstance(block, nn.BatchNorm) and block._kwargs["fix_gamma"]:  # pylint: disable=protected-access
            fixed.add(id(block.gamma))

    net.apply(collect)
    return {path for path, param in structural_names(net).items() if id(param) in fixed}


def file_resnext_widths(model, weights):
    """The widths (``models.families.resnext.resnext_widths``) of the weight file ``weights`` when
    ``model`` is a ``*_mxnet`` ResNeXt and the file holds MXNet's symbolic ResNeXt layers,
    under their published names (``stage1_unit1_conv2_weight``) or the structural paths
    of such a network (a run's ``epoch-NNNN.params``); None otherwise (other networks, or
    a file missing one of the layers read, which loading then reports)."""
    layers = published_layers(model)
    if layers is None:
        return None
    layer_at = {path: layer for layer, path in layers.items()}
    shapes = {}
    for name, array in read_weights(resolve_weights_path(weights))[0].items():
        head, _, param = name.rpartition(".") if "." in name else name.rpartition("_")
        layer = layer_at.get(head, head if head in layers else None)
        if param == "weight" and layer is not None:
            shapes[layer] = array.shape
    try:
        return resnext_widths(shapes, len(architecture(model)[1].layers))
    except KeyError:
        return None


def _detect_source_model(names):
    """The longest registry name that prefixes every parameter name, or None."""
    owners = [model for model in network_names() if all(name.startswith(model + "_") for name in names)]
    return max(owners, key=len) if owners else None


def _to_structural(arrays, source_format, target_net, target_model):
    """Re-key the file's arrays by structural path.

    Returns ``({path: (file name, array)}, unmatched file names, naming)`` where
    ``naming`` says how the names were read: ``"structural"``, ``"published"`` (no
    network prefix: the published DPN names) or the registry model whose symbol names
    the file carries.
    """
    if source_format == "gluon" and all("." in name for name in arrays):
        return {name: (name, array) for name, array in arrays.items()}, [], "structural"
    source_model = _detect_source_model(arrays)
    if source_model is None:
        table, prefix = published_name_table(target_net, target_model), ""
    elif source_model == target_model:
        table, prefix = symbol_name_table(target_net), target_net.prefix
    else:
        source_net = build_network(source_model, classes=1)
        table, prefix = symbol_name_table(source_net), source_net.prefix
    keyed, unmatched = {}, []
    for name, array in arrays.items():
        path = table.get(_canonical_symbol_name(name[len(prefix):]))
        if path is None:
            unmatched.append(name)
        else:
            keyed[path] = (name, array)
    return keyed, unmatched, source_model or "published"


def _shapes_compatible(net_shape, file_shape):
    """Deferred (not yet inferred) dimensions of the network are 0 and match anything."""
    return len(net_shape) == len(file_shape) and all(n in (0, f) for n, f in zip(net_shape, file_shape))


def match_backbone(net, path, model):
    """Pair the arrays of weight file ``path`` with the backbone parameters of ``net``.

    Returns ``(report, {structural path: array})``; nothing is copied yet.
    """
    arrays, source_format = read_weights(path)
    keyed, unmatched, naming = _to_structural(arrays, source_format, net, model)
    targets = {p for p in structural_names(net) if not p.startswith(CLASSIFIER_PATH)}
    optional = fixed_gammas(net)
    report = LoadReport(path, source_format, naming)
    report.loaded = sorted(p for p in targets if p in keyed)
    report.missing = sorted(p for p in targets if p not in keyed and p not in optional)
    report.classifier = sorted(name for p, (name, _) in keyed.items() if p.startswith(CLASSIFIER_PATH))
    report.unexpected = sorted(unmatched + [name for p, (name, _) in keyed.items()
                                            if p not in targets and not p.startswith(CLASSIFIER_PATH)])
    return report, {p: keyed[p][1] for p in report.loaded}


def load_backbone(net, weights, epoch=None, model=None, allow_missing=False, allow_unexpected=False):
    """Copy the backbone weights found in ``weights`` into ``net.features``.

    ``net`` is a registry network (``models.get_model``); ``model`` is its registry name
    (default: its prefix without the trailing ``_``; only symbol names depend on it).
    ``weights``/``epoch`` as in ``resolve_weights_path``. The file's classifier is never
    copied. With ``allow_missing=False`` every backbone parameter must be in the file,
    with ``allow_unexpected=False`` every non-classifier parameter of the file must be
    used; a shape mismatch is always an error. Returns a ``LoadReport``.
    """
    path = resolve_weights_path(weights, epoch)
    model = model or net.prefix[:-1]
    report, arrays = match_backbone(net, path, model)
    params = structural_names(net)
    mismatched = ["%s (file: %s, network: %s)" % (p, array.shape, params[p].shape)
                  for p, array in arrays.items() if not _shapes_compatible(params[p].shape, array.shape)]
    if mismatched:
        raise WeightShapeError("%s does not fit %s: %d shape mismatches: %s"
                               % (path, model, len(mismatched), _abbreviate(mismatched)))
    if not report.loaded:
        raise WeightImportError("%s shares no backbone parameter with %s\n%s" % (path, model, report.summary()))
    if (report.missing and not allow_missing) or (report.unexpected and not allow_unexpected):
        raise WeightImportError("%s does not fit %s\n%s" % (path, model, report.summary()))
    for p, array in arrays.items():
        params[p].set_data(array.astype(params[p].dtype, copy=False))
    log.info(report.summary())
    return report
