"""Convert weights between a Gluon network and its PyTorch twin (``models.torch_nets.build``).

    python -m models.torch_nets.convert_weights runs/r1/epoch-0012.params dpn92.safetensors --network dpn92
    python -m models.torch_nets.convert_weights dpn92.safetensors dpn92-twin.params --network dpn92
    python -m models.torch_nets.convert_weights densenet161-8d451a50.pth densenet161-imagenet.params --network densenet161

A Gluon ``.params`` file (``save_parameters``: a training run's checkpoint) becomes a
state dict of the twin (``.safetensors``, or ``.pth`` through ``torch.save``); a state
dict of the twin or a timm / torchvision ImageNet file (``dpn92.mx_in1k``,
``resnext101_32x4d.gluon_in1k``, ``densenet161.tv_in1k``, ...) becomes a Gluon ``.params``
file, which ``models.get_model(name, pretrained=...)`` reads as backbone weights (the
file's 1000-class classifier is left out there). Neither MXNet nor PyTorch is needed,
except PyTorch to read or write ``.pth`` files (imported then only: the command converts
safetensors files where PyTorch is not installed).
"""
import argparse
import sys

import numpy as np

from data.atomic import atomic_path
from data.cli import add_common_options, command
from models import params_file
from models.families import network_names
from models.weight_convert import from_torchvision_names, gluon_to_torch, torch_to_gluon

TORCH_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def read_torch_weights(path):
    """``{name: numpy array}`` of a PyTorch weight file (``.safetensors`` without PyTorch)."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        return load_file(path)
    from models.torch_nets.weights import read_state_dict
    return {name: tensor.detach().cpu().numpy() for name, tensor in read_state_dict(path).items()}


def write_torch_weights(path, state):
    """Write ``{name: numpy array}`` as ``.safetensors`` (without PyTorch) or with ``torch.save``."""
    with atomic_path(path) as tmp:
        if path.endswith(".safetensors"):
            from safetensors.numpy import save_file
            save_file({name: np.ascontiguousarray(array) for name, array in state.items()}, tmp)
        else:
            import torch
            torch.save({name: torch.from_numpy(np.ascontiguousarray(array)) for name, array in state.items()}, tmp)


def convert(src, dst, network):
    """Convert ``src`` into ``dst`` for ``network``; the direction follows the suffixes
    (``.params`` is Gluon's, ``TORCH_SUFFIXES`` PyTorch's). Returns the number of entries written."""
    if src.endswith(".params") and dst.endswith(TORCH_SUFFIXES):
        state = gluon_to_torch(network, params_file.load(src))
        write_torch_weights(dst, state)
        return len(state)
    if src.endswith(TORCH_SUFFIXES) and dst.endswith(".params"):
        params = torch_to_gluon(network, from_torchvision_names(read_torch_weights(src)))
        params_file.save(dst, params)
        return len(params)
    raise ValueError("convert a .params file to one of %s or back, not %s -> %s"
                     % ("/".join(TORCH_SUFFIXES), src, dst))


@command("convert_weights")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="convert_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="a Gluon .params file, or a PyTorch state dict / timm or torchvision file")
    parser.add_argument("dst", help="the file to write: .params, or %s" % " / ".join(TORCH_SUFFIXES))
    parser.add_argument("--network", required=True, choices=network_names(), metavar="NAME",
                        help="the registered network both files belong to")
    add_common_options(parser)
    args = parser.parse_args(argv)
    count = convert(args.src, args.dst, args.network)
    print("%s -> %s: %d entries (%s)" % (args.src, args.dst, count, args.network))
    return 0


if __name__ == "__main__":
    sys.exit(main())
