"""``python -m models --list``: the registered networks, their size and input normalisation.

Parameters are counted by building each network with a backend of ``models.backends``
(``--backend``; default: the first one installed here), whose ``nets`` module's
``count_parameters`` does it.
"""
import argparse
import sys

from data.cli import UserError, add_common_options, command
from models.backends import BACKENDS, backend_names
from models.specs import get_spec, list_models


def _normalization_text(spec):
    if spec.scale == 1.0 and not any(spec.mean):
        return "raw 0-255"
    return "mean (%s) x %.4g" % (", ".join("%g" % m for m in spec.mean), spec.scale)


def counting_backend(name=None):
    """The backend that counts parameters: `name`, else the first one installed here."""
    candidates = [BACKENDS[name]] if name else list(BACKENDS.values())
    installed = [backend for backend in candidates if backend.installed()]
    if not installed:
        raise UserError("counting parameters needs the framework of %s installed (Python package %s)"
                        % (" or ".join(b.name for b in candidates), " or ".join(b.package for b in candidates)))
    return installed[0]


def model_table(names=None, backend=None):
    """Markdown table: name, family, parameters at 1000 classes (measured with `backend`'s
    networks / published), feature channels, default input normalisation and the ImageNet
    alternative."""
    count_parameters = counting_backend(backend).module("nets").count_parameters
    rows = ["| model | family | params @1000 (M) | published (M) | features | input (default) | imagenet input |",
            "|---|---|---:|---:|---:|---|---|"]
    for name in names or list_models():
        spec = get_spec(name)
        published = "%.1f" % (spec.published_params / 1e6) if spec.published_params else ""
        rows.append("| %s | %s | %.2f | %s | %d | %s | %s |" % (
            name, spec.family, count_parameters(name) / 1e6, published, spec.feature_channels,
            _normalization_text(spec), _normalization_text(spec.with_normalization("imagenet"))))
    return "\n".join(rows)


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
    unknown = sorted(set(args.names) - set(list_models()))
    if unknown:
        parser.error("unknown model(s): %s; known: %s" % (", ".join(unknown), ", ".join(list_models())))
    print(model_table(args.names, args.backend))
    return 0


if __name__ == "__main__":
    sys.exit(main())
