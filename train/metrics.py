"""Classification metrics under MXNet's names: image-level and product-level.

Names as MXNet's ``mx.metric`` prints them (and as the reference logs carry them):
``accuracy``, ``top_k_accuracy_5``, ``cross-entropy`` (mean -log p(true class), without
label smoothing), plus ``product_accuracy``: the accuracy of the arg-max of each
product's averaged image probabilities.
"""
import collections

import mxnet as mx
import numpy as np

ACCURACY = "accuracy"
CROSS_ENTROPY = "cross-entropy"
PRODUCT_ACCURACY = "product_accuracy"
LOSS = "loss"


def top_k_name(k):
    return "top_k_accuracy_%d" % k


# Columns of the running sums kept per device.
_CORRECT, _TOP_K, _CROSS_ENTROPY, _LOSS = range(4)


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


def metrics_from_totals(totals, samples, top_k, with_loss=False):
    samples = max(samples, 1)
    values = collections.OrderedDict()
    values[ACCURACY] = totals[_CORRECT] / samples
    values[top_k_name(top_k)] = totals[_TOP_K] / samples
    values[CROSS_ENTROPY] = totals[_CROSS_ENTROPY] / samples
    if with_loss:
        values[LOSS] = totals[_LOSS] / samples
    return values


class ProductAccuracy:
    """Product-level accuracy over records streamed in file order.

    The images of a product must be consecutive (the validation ``.rec`` keeps the BSON
    file order); a product may be split across batches. Only the probability sum of the
    product still open is kept, so memory does not grow with the number of classes x
    products. A product id that comes back after other products raises ``ValueError``.
    """

    def __init__(self):
        self.products = 0
        self.correct = 0
        self._closed = set()
        self._open = None  # (product_id, probability sum, label)

    def update(self, probabilities, product_ids, labels):
        if len(product_ids) == 0:
            return
        starts = np.concatenate([[0], np.flatnonzero(np.diff(product_ids)) + 1])
        sums = np.add.reduceat(np.asarray(probabilities, np.float64), starts, axis=0)
        run_ids, run_labels = product_ids[starts], labels[starts]
        if self._open is not None:
            open_id, open_sum, open_label = self._open
            if run_ids[0] == open_id:
                sums[0] += open_sum
            else:
                self._close(np.array([open_id]), open_sum[None], np.array([open_label]))
        self._check_not_seen(run_ids)
        self._close(run_ids[:-1], sums[:-1], run_labels[:-1])
        self._open = (run_ids[-1], sums[-1], run_labels[-1])

    def _check_not_seen(self, product_ids):
        listed = product_ids.tolist()
        seen = sorted(self._closed.intersection(listed))
        if seen or len(set(listed)) != len(listed):
            raise ValueError("the images of product %s are not consecutive in the validation records; "
                             "product-level accuracy needs the .rec in BSON file order"
                             % (seen[0] if seen else listed))

    def _close(self, product_ids, sums, labels):
        self._closed.update(product_ids.tolist())
        self.products += len(product_ids)
        self.correct += int((sums.argmax(axis=1) == labels).sum())

    def result(self):
        """Close the last product and return the accuracy."""
        if self._open is not None:
            open_id, open_sum, open_label = self._open
            self._close(np.array([open_id]), open_sum[None], np.array([open_label]))
            self._open = None
        return self.correct / max(self.products, 1)
