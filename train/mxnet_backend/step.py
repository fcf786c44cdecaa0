"""One training iteration, the same for every run: loss, trainable parameters, `TrainStep`."""
import re

from mxnet import autograd, gluon

from models.mxnet_nets.weights import structural_names


class LabelSmoothingCrossEntropy(gluon.HybridBlock):
    """Per-sample softmax cross-entropy against a smoothed target (MXNet's ``smooth_alpha``).

    The true class gets ``1 - smoothing``, every other class ``smoothing / (classes - 1)``,
    as in the reference's ``SoftmaxOutput(smooth_alpha=0.1)``. Logits may be float16; the
    loss is computed in float32.
    """

    def __init__(self, classes, smoothing=0.0, **kwargs):
        super().__init__(**kwargs)
        self._classes = classes
        self._smoothing = smoothing

    def hybrid_forward(self, F, logits, label):
        log_prob = F.log_softmax(F.cast(logits, "float32"), axis=-1)
        true_class = -F.pick(log_prob, label, axis=-1)
        if self._smoothing == 0:
            return true_class
        other_classes = -F.sum(log_prob, axis=-1) - true_class
        return (1.0 - self._smoothing) * true_class + self._smoothing / (self._classes - 1) * other_classes


class FreezePatternError(ValueError):
    """``--freeze-keep`` keeps no parameter of the network trainable."""


class Trainability:
    """Which parameters learn: all trainable ones, or only those kept while frozen.

    ``keep_pattern`` is a regex over structural parameter names (``output.weight``,
    ``features.7.0.body.0.weight``, ...). Gradients are written per batch, or added up
    over ``grad_accum`` batches (``grad_req='add'``).
    """

    def __init__(self, net, grad_accum=1, keep_pattern=r"^output\."):
        self.grad_req = "add" if grad_accum > 1 else "write"
        self._params = {name: p for name, p in structural_names(net).items() if p.grad_req != "null"}
        self._keep = re.compile(keep_pattern)
        if not any(self._keep.search(name) for name in self._params):
            raise FreezePatternError("--freeze-keep %r matches no trainable parameter of the network (names like %s)"
                                     % (keep_pattern, ", ".join(list(self._params)[-2:])))
        self.frozen = None

    def set_frozen(self, frozen):
        """Freeze or unfreeze; returns whether anything changed."""
        if frozen == self.frozen:
            return False
        for name, param in self._params.items():
            param.grad_req = "null" if frozen and not self._keep.search(name) else self.grad_req
        self.frozen = frozen
        return True

    def zero_grad(self):
        for param in self._params.values():
            if param.grad_req != "null":
                param.zero_grad()


class TrainStep:
    """One training iteration: split a batch over the devices, forward, backward, and an
    optimizer step after every ``grad_accum`` batches.

    Gradients are sums over samples; the step divides by the images behind them
    (batch x ``grad_accum`` x ``num_workers``), so k accumulated batches give the same
    update as one k-times-larger batch and n devices the same as one.
    """

    def __init__(self, net, loss, trainer, contexts, trainability, grad_accum=1, dtype="float32", num_workers=1):
        self.net = net
        self.loss = loss
        self.trainer = trainer
        self.contexts = contexts
        self.trainability = trainability
        self.grad_accum = grad_accum
        self.dtype = dtype
        self.num_workers = num_workers
        self._pending = 0

    def set_frozen(self, frozen):
        """Freeze or unfreeze (see `Trainability`); the network gets a new graph when the
        set of gradients changes. Returns whether it changed."""
        changed = self.trainability.set_frozen(frozen)
        if changed:
            self.net.hybridize(static_alloc=True, static_shape=True)
        return changed

    def __call__(self, data, label, sums=None):
        """Process one batch; returns True when it completed an optimizer step."""
        if data.shape[0] % len(self.contexts):
            raise ValueError("batch of %d images cannot be split evenly over %d devices"
                             % (data.shape[0], len(self.contexts)))
        datas = gluon.utils.split_and_load(data, self.contexts)
        labels = gluon.utils.split_and_load(label, self.contexts)
        with autograd.record():
            logits = [self.net(x.astype(self.dtype, copy=False)) for x in datas]
            losses = [self.loss(z, y) for z, y in zip(logits, labels)]
        autograd.backward(losses)
        if sums is not None:
            sums.update(logits, labels, losses)
        self._pending += 1
        if self._pending < self.grad_accum:
            return False
        self.trainer.step(data.shape[0] * self.grad_accum * self.num_workers)
        if self.grad_accum > 1:
            self.trainability.zero_grad()
        self._pending = 0
        return True
