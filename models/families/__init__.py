"""Network families, each declared once: its architectures, input, names across frameworks and builders.

A family (``models.families.dpn``, ``.resnext``, ``.densenet``) is one `Family` in one
module, as timm keeps a model's registration and default configuration beside its
definition: the architectures of its networks (frozen dataclasses, by registered name),
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


@dataclass(frozen=True)
class Family:
    """One network family (see the module docstring).

    ``networks``: registered name -> architecture; ``imagenet_input(config)``: ``(mean,
    scale)`` of the ImageNet weights' input; ``kind(config)``: the family a network's spec
    shows (``se_resnext`` for a ResNeXt with squeeze-excitation); ``layers(config)``: the
    `Layer` list, input to classifier; ``published_layers(config)``: ``{layer name in the
    published MXNet checkpoints: Gluon block path}`` where those names are not the network's
    own (None: they are); ``published_params``: millions of parameters at 1000 classes as
    published, by network name; ``builders``: backend name -> module of that backend's
    networks that builds this family (the interface each backend's package documents)."""

    name: str
    networks: Mapping[str, object]
    imagenet_input: Callable
    layers: Callable
    builders: Mapping[str, str]
    kind: Callable = None
    published_layers: Callable = _no_published_layers
    published_params: Mapping[str, float] = field(default_factory=dict)

    def kind_of(self, config):
        return self.kind(config) if self.kind is not None else self.name

    def builder(self, backend):
        """The module of `backend`'s networks that builds this family (imported: it loads
        that framework)."""
        if backend not in self.builders:
            raise ArchitectureError("the %s networks have no %s implementation (they exist on %s)"
                                    % (self.name, backend, ", ".join(sorted(self.builders))))
        return importlib.import_module(self.builders[backend])


FAMILIES = {}


def register(family):
    """Add `family` (a `Family`) to the registry; a network name may belong to one family only."""
    taken = sorted(set(family.networks) & {name for f in FAMILIES.values() for name in f.networks})
    if family.name in FAMILIES or taken:
        raise ValueError("family %s registered twice, or its networks %s are another's" % (family.name, taken))
    FAMILIES[family.name] = family
    return family


def network_names():
    """Sorted names of every registered network (those of ``models.list_models()``)."""
    return sorted(name for family in FAMILIES.values() for name in family.networks)


def family_of(name):
    """The `Family` network `name` belongs to; ``KeyError`` naming the known networks."""
    for family in FAMILIES.values():
        if name in family.networks:
            return family
    raise KeyError("unknown model %r; known models: %s" % (name, ", ".join(network_names())))


def architecture(name, overrides=None):
    """``(family name, config)`` of network ``name``. ``overrides``: ``{field: value}``
    replacing fields of the registered configuration (what `config_overrides` gives, a run's
    metadata records)."""
    family = family_of(name)
    return family.name, _overridden(family.networks[name], overrides or {})


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
    """The `Layer` list of network ``name``, input to classifier."""
    family = family_of(name)
    return family.layers(architecture(name, overrides)[1])


def published_layers(name, overrides=None):
    """``{published layer name: Gluon block path}`` of network ``name``'s published MXNet
    checkpoints where they do not use its own names (the ``*_mxnet`` ResNeXts), or None."""
    family = family_of(name)
    return family.published_layers(architecture(name, overrides)[1])


# The families, each registering itself (last: they use the names above).
from models.families import densenet, dpn, resnext  # noqa: E402,F401
