"""Metric sums of MXNet batches, kept on the devices: the MXNet side of ``train.metrics``."""
import mxnet as mx
import numpy as np

from train.metrics import metrics_from_totals


def batch_sums(logits, labels, top_k, losses=None):
    """Sums over one batch on the batch's device: [correct, top-k correct, cross-entropy, loss]."""
    logits = logits.astype("float32", copy=False)
    labels = labels.astype("float32", copy=False)
    k = min(top_k, logits.shape[1])
    correct = (mx.nd.argmax(logits, axis=1) == labels).sum()
    in_top_k = (mx.nd.topk(logits, axis=1, k=k) == labels.reshape((-1, 1))).sum()
    cross_entropy = -mx.nd.pick(mx.nd.log_softmax(logits, axis=1), labels, axis=1).sum()
    loss = losses.astype("float32", copy=False).sum() if losses is not None else mx.nd.zeros((1,), logits.context)
    return mx.nd.concat(correct, in_top_k, cross_entropy, loss, dim=0)


class RunningSums:
    """Metric sums of a stream of batches, kept on the devices (no sync per batch)."""

    def __init__(self, top_k):
        self.top_k = top_k
        self.samples = 0
        self._sums = {}

    def update(self, logits_per_device, labels_per_device, losses_per_device=None):
        losses_per_device = losses_per_device or [None] * len(logits_per_device)
        for logits, labels, losses in zip(logits_per_device, labels_per_device, losses_per_device):
            sums = batch_sums(logits, labels, self.top_k, losses)
            key = logits.context
            self._sums[key] = sums if key not in self._sums else self._sums[key] + sums
            self.samples += logits.shape[0]

    def totals(self):
        """Sums over all devices as a float64 numpy vector (waits for the devices)."""
        total = np.zeros(4)
        for sums in self._sums.values():
            total += sums.asnumpy()
        return total

    def metrics(self):
        """The metrics so far, in MXNet's order and names."""
        return metrics_from_totals(self.totals(), self.samples, self.top_k)
