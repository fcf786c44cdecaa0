"""Batch norms of frozen layers as MXNet treats them (``--freeze-epochs``, ``--freeze-keep``).

MXNet 1.9.1 on the CPU updates a batch norm's running mean and variance in the layer's
*backward* pass (``BatchNormBackwardImpl``; oneDNN's too), not in its forward. Freezing with
``grad_req='null'`` therefore leaves the statistics of a batch norm untouched exactly when no
gradient flows through it: neither its own gamma/beta nor any parameter between the input
and it trains. Its forward still normalises with the batch's statistics (training mode).
PyTorch updates the statistics in every training-mode forward: two frozen epochs of
``dpn_tiny`` moved them by up to 1.3e3 where MXNet's stayed as they were (issue 20 saw 5.3e3,
and a validation cross-entropy of 9.76 against MXNet's 15.67). The rule reproducing MXNet:
``momentum`` 0 on those batch norms
while frozen (``running = (1 - 0) * running + 0 * batch``, bit for bit unchanged, while the
batch's statistics still normalise), restored when the layers unfreeze. With the default
``--freeze-keep '^output\\.'`` that is every batch norm of the network.

MXNet on GPUs uses cuDNN's batch norm, which updates the statistics in the forward pass as
PyTorch does (apache/mxnet#14357); the rule makes frozen layers frozen on every device, as the
MXNet backend keeps them on the CPU, where both backends are compared.
"""
import contextlib

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def _batchnorms(model):
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, _BatchNorm) and module.track_running_stats]


@contextlib.contextmanager
def _trained_only(model, frozen):
    """Parameters require a gradient iff they did and are not named in `frozen`; restored on exit."""
    saved = {name: param.requires_grad for name, param in model.named_parameters()}
    try:
        for name, param in model.named_parameters():
            param.requires_grad_(saved[name] and name not in frozen)
        yield
    finally:
        for name, param in model.named_parameters():
            param.requires_grad_(saved[name])


def stale_batchnorms(model, frozen, example):
    """The names of `model`'s batch norms whose statistics MXNet leaves untouched while the
    parameters named in `frozen` (``named_parameters`` names) are frozen and the others
    train: those whose output needs no gradient. Found with one forward of `example` in
    evaluation mode (no statistics change, no dropout) that records whether each batch norm's
    output requires a gradient; training flags and ``requires_grad`` are restored. (The
    order in which modules are registered would misjudge a branch such as a shortcut
    registered after a trained body.)"""
    needs_gradient = {}

    def record(name):
        def hook(module, inputs, output):
            needs_gradient[name] = needs_gradient.get(name, False) or output.requires_grad
        return hook

    norms = _batchnorms(model)
    hooks = [module.register_forward_hook(record(name)) for name, module in norms]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        with _trained_only(model, set(frozen)), torch.enable_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes.items():
            module.training = training
    return [name for name, _ in norms if not needs_gradient.get(name, True)]


def keep_statistics(model, names):
    """Momentum 0 for the batch norms `names` (their statistics stay as they are); returns
    ``{name: previous momentum}`` for `restore_momenta`."""
    modules = dict(model.named_modules())
    momenta = {name: modules[name].momentum for name in names}
    for name in names:
        modules[name].momentum = 0.0
    return momenta


def restore_momenta(model, momenta):
    """Undo `keep_statistics`: give the batch norms their momenta back."""
    modules = dict(model.named_modules())
    for name, momentum in momenta.items():
        modules[name].momentum = momentum
