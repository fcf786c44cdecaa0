"""Network families, each declared once: its architectures, input, names across frameworks and builders.

A family (``models.families.dpn``, ``.resnext``, ``.densenet``, ``.timm_models``) is one
`Family` in one module, as timm keeps a model's registration and default configuration
beside its definition: the architectures of its networks (frozen dataclasses, by registered name,
or, for a family of networks named by a pattern, ``timm/<name>`` for any of timm's, the
configuration a name gives),
the input normalisation its ImageNet weights were trained with, the published parameter
counts, the table of its layers between the Gluon network and the PyTorch one
(``models.weight_convert``), the names its published MXNet checkpoints give its layers,
and, per backend (``models.backends``), the module of that backend's networks that
builds it (``models.mxnet_nets.dpn``, ``models.torch_nets.dpn``). Nothing here imports a
framework: a PyTorch process, an MXNet process and the predictor's parent read the same
declarations, and each backend builds from them.

`architecture(name)` is the lookup every side uses: ``(family name, configuration)``.
"""
import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

from models.runs import GLUON_PARAMS


class ArchitectureError(ValueError):
    """Configuration fields a network does not have, or weight shapes no configuration of
    the network can hold (the message names the layer or field)."""


# The classifier's block path in every Gluon network (``models.mxnet_nets.classifier``).
GLUON_CLASSIFIER = "output"


@dataclass(frozen=True)
class Layer:
    """One layer of a network: its Gluon block path, its module path in the PyTorch
    network, its kind (``models.weight_convert`` says how each kind's parameters pair)."""

    gluon: str
    torch: str
    kind: str


def _no_published_layers(config):
    return None


def _same_config(config, image_shape):
    return config


@dataclass(frozen=True)
class Family:
    """One network family (see the module docstring).

    ``networks``: registered name -> architecture; ``prefix`` and ``config_of``: for a
    family of networks named by a pattern instead (``timm/<name>``), the names' prefix and
    the configuration of a name (whether that name exists is for its builders to say);
    ``imagenet_input(config)``: ``(mean, scale)`` of the ImageNet weights' input;
    ``kind(config)``: the family a network's spec shows (``se_resnext`` for a ResNeXt with
    squeeze-excitation); ``layers(config)``: the `Layer` list, input to classifier, of a
    network with a Gluon twin (None: none has); ``published_layers(config)``: ``{layer name
    in the published MXNet checkpoints: Gluon block path}`` where those names are not the
    network's own (None: they are); ``published_params``: millions of parameters at 1000
    classes as published, by network name; ``builders``: backend name -> module of that
    backend's networks that builds this family (the interface each backend's package
    documents); ``weights_format``: the format of its runs' weights (``models.runs``);
    ``default_weights``: the ``--pretrained`` word that loads a network's own ImageNet
    weights through its library's loader (its PyTorch builder's ``imagenet_state(config,
    classes)`` gives them; None: only files); ``sized(config, image_shape)``:
    the configuration of a network built for inputs of `image_shape` (3, H, W), for the
    networks whose input size is fixed when they are built (a ViT's position embeddings);
    ``description``: what the listing says of a pattern-named family."""

    name: str
    imagenet_input: Callable
    builders: Mapping[str, str]
    networks: Mapping[str, object] = field(default_factory=dict)
    layers: Callable = None
    kind: Callable = None
    published_layers: Callable = _no_published_layers
    published_params: Mapping[str, float] = field(default_factory=dict)
    prefix: str = None
    config_of: Callable = None
    weights_format: str = GLUON_PARAMS
    default_weights: str = None
    sized: Callable = _same_config
    description: str = ""

    def kind_of(self, config):
        return self.kind(config) if self.kind is not None else self.name

    def has(self, name):
        """Whether network `name` belongs to this family (registered, or named by its pattern)."""
        return name in self.networks or (self.prefix is not None and name.startswith(self.prefix)
                                          and len(name) > len(self.prefix))

    def config(self, name):
        """The registered (or pattern-given) configuration of its network `name`."""
        return self.networks[name] if name in self.networks else self.config_of(name[len(self.prefix):])

    def check_backend(self, backend):
        """``ArchitectureError`` saying where this family's networks exist, when backend
        `backend` (``models.backends``) cannot build them."""
        if backend not in self.builders:
            from models.backends import get_backend
            frameworks = " and ".join(get_backend(name).framework for name in sorted(self.builders))
            raise ArchitectureError("the %s networks exist on %s only (--backend %s), not on %s"
                                    % (self.name, frameworks, " or ".join(sorted(self.builders)),
                                       get_backend(backend).framework))

    def builder(self, backend):
        """The module of `backend`'s networks that builds this family (imported: it loads
        that framework); ``ArchitectureError`` when `backend` has none."""
        self.check_backend(backend)
        return importlib.import_module(self.builders[backend])


FAMILIES = {}


def register(family):
    """Add `family` (a `Family`) to the registry; a network name may belong to one family only."""
    taken = sorted(set(family.networks) & {name for f in FAMILIES.values() for name in f.networks})
    taken += [name for name in family.networks for f in FAMILIES.values() if f.prefix and f.has(name)]
    if family.name in FAMILIES or taken:
        raise ValueError("family %s registered twice, or its networks %s are another's" % (family.name, taken))
    FAMILIES[family.name] = family
    return family


def network_names():
    """Sorted names of every registered network (those of ``models.list_models()``; the
    networks of a family named by a pattern are not listed: `pattern_families`)."""
    return sorted(name for family in FAMILIES.values() for name in family.networks)


def pattern_families():
    """The families whose networks are named by a pattern (``timm/<name>``), in registration order."""
    return [family for family in FAMILIES.values() if family.prefix is not None]


def family_of(name):
    """The `Family` network `name` belongs to; ``KeyError`` naming the known networks."""
    for family in FAMILIES.values():
        if family.has(name):
            return family
    patterns = ["%s<name>" % family.prefix for family in pattern_families()]
    raise KeyError("unknown model %r; known models: %s" % (name, ", ".join(network_names() + patterns)))


def architecture(name, overrides=None):
    """``(family name, config)`` of network ``name``. ``overrides``: ``{field: value}``
    replacing fields of the registered configuration (what `config_overrides` gives, a run's
    metadata records)."""
    family = family_of(name)
    return family.name, _overridden(family.config(name), overrides or {})


def _overridden(config, overrides):
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config)})
    if unknown:
        raise ArchitectureError("%s has no field %s" % (type(config).__name__, ", ".join(unknown)))
    return dataclasses.replace(config, **overrides)


def config_overrides(name, config):
    """``{field: value}`` of ``config`` where it differs from network ``name``'s registered
    configuration: the JSON-ready form ``architecture(name, overrides)`` reads back."""
    registered = architecture(name)[1]
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(registered, f.name)}


def layer_table(name, overrides=None):
    """The `Layer` list of network ``name``, input to classifier; ``ArchitectureError`` for
    a network without a Gluon twin."""
    family = family_of(name)
    if family.layers is None:
        raise ArchitectureError("%s has no Gluon twin: its weights have no Gluon names" % name)
    return family.layers(architecture(name, overrides)[1])


def published_layers(name, overrides=None):
    """``{published layer name: Gluon block path}`` of network ``name``'s published MXNet
    checkpoints where they do not use its own names (the ``*_mxnet`` ResNeXts), or None."""
    family = family_of(name)
    return family.published_layers(architecture(name, overrides)[1])


# The families, each registering itself (last: they use the names above).
from models.families import densenet, dpn, resnext, timm_models  # noqa: E402,F401
