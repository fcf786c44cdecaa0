"""SGD and Nesterov momentum as MXNet 1.9.1 computes them (``--optimizer sgd`` and ``nag``).

MXNet keeps the learning rate *inside* the momentum buffer: the buffer is the last weight
increment. ``torch.optim.SGD`` keeps gradients in it and multiplies the whole buffer by the
current rate. The two agree while the rate is constant and part at every change of it: after
one x0.2 step the weights differ by 3e-2 (issue 20), for a few dozen steps, and the
reference's NAG recipe (M08, three steps) trains with MXNet's rule. `MXNetMomentum` is that
rule; NAdam and Adam stay ``torch.optim``'s, which follow the Gluon trainer already.

Source: ``src/operator/optimizer_op-inl.h`` of the 1.9.1 tag (``SGDMomKernel``,
``NAGMomKernel``, ``SGDKernel``, which ``mx.optimizer.SGD``/``NAG`` call in place), checked
step by step against MXNet (``tests/torch/test_torch_optim.py``: 30 steps with two rate
changes, within 1e-5).
"""
import torch
from torch.optim import Optimizer

# The per-parameter state: MXNet's momentum, in weight units (torch.optim.SGD's
# ``momentum_buffer`` holds gradients).
INCREMENT = "mxnet_momentum"


class MXNetMomentum(Optimizer):
    r"""SGD with momentum (``mx.optimizer.SGD``), or with Nesterov momentum (``nesterov``:
    ``mx.optimizer.NAG``), updating as MXNet 1.9.1 does.

    Per parameter, with ``g`` its gradient (of the averaged loss: MXNet's ``rescale_grad``
    is already in it), ``w`` the weight, ``m`` the momentum (zeros at first), and the
    group's ``lr``, ``momentum`` (mu) and ``weight_decay`` (wd)::

        SGD (sgd_mom_update):  m = mu * m - lr * wd * w - lr * g
                               w = w + m
        NAG (nag_mom_update):  m = mu * m
                               w = w - m + (mu + 1) * (m - lr * (g + wd * w))
                               m = m - lr * (g + wd * w)      # w: the updated weight
        mu = 0 (sgd_update):   w = (1 - lr * wd) * w - lr * g     (no momentum kept)

    NAG's last line reads the weight the line before wrote: MXNet's ``NAG`` calls the
    kernel in place (``out=weight``). Weight decay is L2 on the gradient, as in MXNet, per
    parameter group (``weight_decay`` 0 stands for MXNet's ``wd_mult`` 0). Parameters without
    a gradient (frozen) are left alone, as MXNet leaves ``grad_req='null'`` ones: no decay,
    no change of their momentum. The updates run as ``torch._foreach_*`` operations over all
    parameters of a group at once, as ``torch.optim.SGD`` does on GPUs (one kernel per
    operation instead of one per parameter and operation).

    ``load_state_dict`` also takes the state of ``torch.optim.SGD`` that PyTorch runs saved
    before this optimizer (`from_torch_sgd`).
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, nesterov=False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("lr %r, momentum %r and weight_decay %r must not be negative" % (lr, momentum,
                                                                                            weight_decay))
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            weights, grads = params, [p.grad for p in params]
            lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
            if mu == 0:
                torch._foreach_mul_(weights, 1.0 - lr * wd)
                torch._foreach_add_(weights, grads, alpha=-lr)
                continue
            for p in params:
                if INCREMENT not in self.state[p]:
                    self.state[p][INCREMENT] = torch.zeros_like(p, memory_format=torch.preserve_format)
            increments = [self.state[p][INCREMENT] for p in params]
            torch._foreach_mul_(increments, mu)
            if group["nesterov"]:
                steps = torch._foreach_add(grads, weights, alpha=wd)
                torch._foreach_mul_(steps, lr)
                ahead = torch._foreach_sub(increments, steps)
                torch._foreach_mul_(ahead, mu + 1.0)
                torch._foreach_sub_(weights, increments)
                torch._foreach_add_(weights, ahead)
                torch._foreach_add_(increments, torch._foreach_add(grads, weights, alpha=wd), alpha=-lr)
            else:
                torch._foreach_add_(increments, weights, alpha=-lr * wd)
                torch._foreach_add_(increments, grads, alpha=-lr)
                torch._foreach_add_(weights, increments)
        return loss

    def load_state_dict(self, state_dict):
        super().load_state_dict(from_torch_sgd(state_dict) if is_torch_sgd_state(state_dict) else state_dict)


def is_torch_sgd_state(state_dict):
    """Whether `state_dict` is ``torch.optim.SGD``'s (its groups have a ``dampening``)."""
    return any("dampening" in group for group in state_dict["param_groups"])


def from_torch_sgd(state_dict):
    """The `MXNetMomentum` state equivalent to a ``torch.optim.SGD`` state dict: each
    ``momentum_buffer`` ``b`` (gradient units) becomes the increment ``m = -lr * b`` at the
    rate of the group's last step (the rate ``train_step`` set before it). At a constant rate
    the run then continues as ``torch.optim.SGD`` would have: PyTorch's next increment
    ``-lr * (mu * b + g)`` is MXNet's ``mu * m - lr * g`` (Nesterov's too, but for the weight
    decay of the updated weight); from a change of rate on it follows MXNet's rule."""
    keys = ("lr", "momentum", "weight_decay", "nesterov", "params")
    groups = [{key: group[key] for key in keys} for group in state_dict["param_groups"]]
    rate = {index: group["lr"] for group in groups for index in group["params"]}
    state = {index: {INCREMENT: entry["momentum_buffer"] * -rate[index]}
             for index, entry in state_dict["state"].items() if entry.get("momentum_buffer") is not None}
    return {"state": state, "param_groups": groups}
