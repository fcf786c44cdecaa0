"""Optimisers and weight decay of the reference recipes (the schedule: ``train.schedule``).

Weight decay: the reference passed ``--wd 4e-5`` to every run, but only its SGD/NAG runs
got it; its Adam and NAdam runs trained without weight decay. Here ``--wd`` reaches every
optimiser, and ``wd_sgd_only=True`` reproduces the reference. As in MXNet's symbolic
Module (which the reference used), decay applies to ``*weight`` and ``*gamma`` parameters
only, not to biases and BatchNorm betas.
"""
import functools

import mxnet as mx
from mxnet.ndarray import sqrt, square, zeros

from train.config import ADAPTIVE_OPTIMIZERS, OPTIMIZERS


def nadam_momentum(t, beta1, schedule_decay):
    """NAdam's warming momentum coefficient mu_t (Dozat 2016)."""
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * schedule_decay))


@functools.lru_cache(maxsize=4096)
def nadam_momentum_product(t, beta1, schedule_decay):
    """prod_{i=1..t} mu_i; 0.0 once it is too small to change ``1 - product`` in float64."""
    product = 1.0
    for i in range(1, t + 1):
        product *= nadam_momentum(i, beta1, schedule_decay)
        if product < 1e-20:
            return 0.0
    return product


class NAdam(mx.optimizer.Optimizer):
    """Nesterov Adam with the momentum schedule kept per parameter.

    MXNet 1.9.1's ``Nadam`` keeps one ``m_schedule`` scalar for the whole optimizer and
    multiplies it on every ``update`` call, i.e. once per parameter and per device: with
    several devices updating their own replicas (``update_on_kvstore=False``) the replicas
    receive different updates and drift apart, and a resumed run cannot reproduce it.
    Here the schedule is a pure function of each parameter's own update count ``t``, which
    the optimizer keeps per device and which is saved with the trainer state. The update
    rule is otherwise MXNet's (and the reference's); within a few dozen steps both schedules
    reach the same limit, where ``1 - prod(mu)`` is 1.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, schedule_decay=0.004, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule_decay = schedule_decay

    def create_state(self, index, weight):
        return (zeros(weight.shape, weight.context, dtype=weight.dtype),   # first moment
                zeros(weight.shape, weight.context, dtype=weight.dtype))   # second moment

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr = self._get_lr(index)
        wd = self._get_wd(index)
        t = self._index_update_count[index]

        grad = grad * self.rescale_grad + wd * weight
        if self.clip_gradient is not None:
            grad = mx.nd.clip(grad, -self.clip_gradient, self.clip_gradient)

        momentum_t = nadam_momentum(t, self.beta1, self.schedule_decay)
        momentum_next = nadam_momentum(t + 1, self.beta1, self.schedule_decay)
        schedule = nadam_momentum_product(t, self.beta1, self.schedule_decay)
        schedule_next = schedule * momentum_next

        mean, variance = state
        mean[:] = self.beta1 * mean + (1.0 - self.beta1) * grad
        variance[:] = self.beta2 * variance + (1.0 - self.beta2) * square(grad)

        grad_hat = grad / (1.0 - schedule)
        mean_hat = mean / (1.0 - schedule_next)
        variance_hat = variance / (1.0 - self.beta2 ** t)
        mean_bar = (1.0 - momentum_t) * grad_hat + momentum_next * mean_hat
        weight[:] -= lr * mean_bar / (sqrt(variance_hat) + self.epsilon)


def create_optimizer(name, learning_rate, wd=0.0, momentum=0.9, multi_precision=False, wd_sgd_only=False):
    """The optimiser `name` (one of ``OPTIMIZERS``) with weight decay `wd`.

    ``wd_sgd_only`` reproduces the reference's quirk: Adam/NAdam get no weight decay.
    The learning rate is set per batch by the training loop (``learning_rate_at``).
    """
    if name not in OPTIMIZERS:
        raise ValueError("unknown optimizer %r, choose from %s" % (name, ", ".join(OPTIMIZERS)))
    if wd_sgd_only and name in ADAPTIVE_OPTIMIZERS:
        wd = 0.0
    common = dict(learning_rate=learning_rate, wd=wd, multi_precision=multi_precision)
    if name == "nadam":
        return NAdam(**common)
    if name == "adam":
        return mx.optimizer.Adam(**common)
    if name == "sgd":
        return mx.optimizer.SGD(momentum=momentum, **common)
    return mx.optimizer.NAG(momentum=momentum, **common)


def decays(param_name):
    """Whether weight decay applies to a parameter (MXNet Module's convention)."""
    return param_name.endswith("weight") or param_name.endswith("gamma")


def apply_weight_decay_convention(params):
    """Set ``wd_mult`` 0 on biases, BatchNorm betas and statistics of a ParameterDict."""
    for param in params.values():
        param.wd_mult = 1.0 if decays(param.name) else 0.0
