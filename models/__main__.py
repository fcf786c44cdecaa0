"""``python -m models --list``: the registered networks, their size and input normalisation.

Parameters are counted by building each network with a backend of ``models.backends``
(``--backend``; default: the first one installed here that builds the network), whose
``nets`` module's ``count_parameters`` does it. A family of networks named by a pattern
(``timm/<name>``: any of timm's) gets one row saying how to name its networks; name one
(``--list timm/resnet18``) to count its parameters.
"""
import argparse
import sys

from data.cli import UserError, add_common_options, command
from models.backends import BACKENDS, backend_names
from models.families import ArchitectureError, family_of, pattern_families
from models.specs import get_spec, list_models


def _normalization_text(spec):
    if spec.scale == 1.0 and not any(spec.mean):
        return "raw 0-255"
    scale = spec.scale if isinstance(spec.scale, tuple) else (spec.scale,)
    return "mean (%s) x %s" % (", ".join("%g" % m for m in spec.mean), "(%s)" % ", ".join("%.4g" % s for s in scale)
                               if len(scale) > 1 else "%.4g" % scale[0])


def counting_backend(name=None, family=None):
    """The backend that counts parameters: `name`, else the first one installed here (that
    builds the networks of `family`, when given)."""
    if name and family is not None:
        try:
            family.check_backend(name)
        except ArchitectureError as err:
            raise UserError(str(err)) from None
    candidates = [BACKENDS[name]] if name else [backend for backend in BACKENDS.values()
                                                 if family is None or backend.name in family.builders]
    installed = [backend for backend in candidates if backend.installed()]
    if not installed:
        raise UserError("counting parameters needs the framework of %s installed (Python package %s)"
                        % (" or ".join(b.name for b in candidates), " or ".join(b.package for b in candidates)))
    return installed[0]


def model_table(names=None, backend=None):
    """Markdown table: name, family, parameters at 1000 classes (measured with `backend`'s
    networks / published), feature channels, default input normalisation and the ImageNet
    alternative; without `names`, every registered network and a row per pattern-named family."""
    rows = ["| model | family | params @1000 (M) | published (M) | features | input (default) | imagenet input |",
            "|---|---|---:|---:|---:|---|---|"]
    for name in names or list_models():
        count_parameters = counting_backend(backend, family_of(name)).module("nets").count_parameters
        spec = get_spec(name)
        published = "%.1f" % (spec.published_params / 1e6) if spec.published_params else ""
        rows.append("| %s | %s | %.2f | %s | %d | %s | %s |" % (
            name, spec.family, count_parameters(name) / 1e6, published, spec.feature_channels,
            _normalization_text(spec), _normalization_text(spec.with_normalization("imagenet"))))
    for family in () if names else pattern_families():
        rows.append("| %s<name> | %s | %s | | | raw 0-255 | its weights' own |" % (
            family.prefix, family.name, family.description + "; on " + ", ".join(sorted(family.builders))))
    return "\n".join(rows)


def _known(name):
    try:
        family_of(name)
    except KeyError:
        return False
    return True


@command("python -m models")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    parser.add_argument("--list", action="store_true", help="print the table of registered networks")
    parser.add_argument("names", nargs="*", help="only these networks (default: all)")
    parser.add_argument("--backend", choices=backend_names(), default=None,
                        help="the backend whose networks count the parameters (default: the first installed)")
    add_common_options(parser)
    args = parser.parse_args(argv)
    if not args.list and not args.names:
        parser.print_help()
        return 0
    unknown = sorted(name for name in args.names if not _known(name))
    if unknown:
        parser.error("unknown model(s): %s; known: %s" % (", ".join(unknown), ", ".join(list_models())))
    print(model_table(args.names, args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
